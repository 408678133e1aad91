"""The hash-pinned locks: in step with pyproject.toml, and binary wheels for both unit targets.

The aarch64 check asks the package registry (``pip download``, binary wheels only, hashes
checked) for every pin of the unit's locks as the targets would install them: CPython 3.11
on glibc 2.36 (Raspberry Pi OS Bookworm) and CPython 3.10 on glibc 2.35 (JetPack 6). A
manylinux_2_X wheel runs on glibc >= 2.X, so the allowed tags are manylinux_2_17 .. 2_X.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support.tools import load_tool

ROOT = Path(__file__).resolve().parents[1]
LOCKS = ROOT / "locks"
TARGETS = [("unit-aarch64-cp311.txt", "3.11", "cp311", 36), ("unit-aarch64-cp310.txt", "3.10", "cp310", 35)]


def _lock_check():  # type: ignore[no-untyped-def]
    return load_tool("lock_check.py")


def test_every_lock_is_in_step_with_pyproject() -> None:
    locks = sorted(LOCKS.glob("*-*-cp*.txt"))
    assert {p.name.split("-")[0] for p in locks} == {"unit", "carrier", "dev"}
    assert _lock_check().problems_all(locks) == []


def test_every_pin_carries_hashes() -> None:
    for lock in LOCKS.glob("*-*-cp*.txt"):
        text = lock.read_text()
        assert text.count("==") > 0
        assert text.count("==") <= text.count("--hash=sha256:"), lock.name


def test_stale_lock_is_reported(tmp_path: Path) -> None:
    lc = _lock_check()
    lock = tmp_path / "unit-aarch64-cp311.txt"
    lock.write_text("\n".join(line for line in (LOCKS / "unit-aarch64-cp311.txt").read_text().splitlines()
                              if not line.startswith("cbor2==")))
    assert any("cbor2" in p and "not pinned" in p for p in lc.problems(lock))


@pytest.mark.slow
@pytest.mark.registry
@pytest.mark.parametrize(("lock", "python", "abi", "glibc_minor"), TARGETS)
def test_unit_lock_resolves_to_binary_wheels_for_aarch64(tmp_path: Path, lock: str, python: str, abi: str,
                                                         glibc_minor: int) -> None:
    platforms = ["manylinux2014_aarch64"] + [f"manylinux_2_{m}_aarch64" for m in range(17, glibc_minor + 1)]
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
           "--only-binary=:all:", "--require-hashes", "--python-version", python, "--implementation", "cp",
           "--abi", abi, "-r", str(LOCKS / lock), "-d", str(tmp_path)]
    for p in platforms:
        cmd += ["--platform", p]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == len(_lock_check().pins(LOCKS / lock))
    assert all(f.endswith(".whl") for f in files), files
    native = [f for f in files if not f.endswith("-none-any.whl")]
    assert any(f.startswith("ai_edge_litert-") and "aarch64" in f for f in native), native
    assert all("aarch64" in f for f in native), native
