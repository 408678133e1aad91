"""Is a lock in locks/ still in step with pyproject.toml? Prints what is missing or off.

    python tools/lock_check.py locks/unit-aarch64-cp311.txt [more locks]    exit 1 if any is stale

A lock is named ``<product>-<machine>-cp<XY>.txt``; the product says which extras it
carries (unit: none, carrier: carrier, dev: dev + carrier + fleet). Every requirement of those
(markers evaluated for that machine and Python) must be pinned in the lock at a version
the requirement allows. Regenerate with ``tools/lock.sh``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = {"unit": (), "carrier": ("carrier",), "dev": ("dev", "carrier", "fleet")}
_NAME = re.compile(r"(?P<product>[a-z]+)-(?P<machine>[a-z0-9_]+)-cp(?P<major>\d)(?P<minor>\d+)\.txt")
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>[^\s;\\]+)", re.MULTILINE)


def pins(lock: Path) -> dict[str, str]:
    return {canonicalize_name(m["name"]): m["version"] for m in _PIN.finditer(lock.read_text())}


def problems(lock: Path, pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    m = _NAME.fullmatch(lock.name)
    if m is None or m["product"] not in EXTRAS:
        return [f"{lock.name}: expected <{'|'.join(EXTRAS)}>-<machine>-cp<XY>.txt"]
    version = f"{m['major']}.{m['minor']}"
    env = {"python_version": version, "python_full_version": f"{version}.0",
           "sys_platform": "linux", "platform_system": "Linux", "platform_machine": m["machine"],
           "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
    project = tomllib.loads(pyproject.read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in EXTRAS[m["product"]]:
        wanted += project["optional-dependencies"][extra]
    have = pins(lock)
    out = []
    for text in wanted:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        name = canonicalize_name(req.name)
        if name not in have:
            out.append(f"{lock.name}: {req} is not pinned")
        elif not req.specifier.contains(have[name], prereleases=True):
            out.append(f"{lock.name}: {req} does not allow the pinned {name}=={have[name]}")
    return out


def problems_all(locks: list[Path]) -> list[str]:
    return [p for lock in locks for p in problems(lock)]


def main(argv: list[str]) -> int:
    found = problems_all([Path(a) for a in argv])
    for p in found:
        print(p, file=sys.stderr)
    if found:
        print("regenerate the locks with tools/lock.sh", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
