"""The floor plan of the package, enforced: which wing may import which.

``core <- crypto <- protocol <- {vision, mqtt} <- {unit, carrier, fleet} <- lab``: nothing
imports upward or sideways; ``unit``, ``carrier`` and ``fleet`` never import each other.
Every import counts, also one inside a function or under ``TYPE_CHECKING``; tests, tools
and ``lab`` may import anything. Also: each heavy library has one importer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "device" / "kycedge"

BELOW: dict[str, set[str]] = {
    "": set(),
    "core": set(),
    "crypto": {"core"},
    "protocol": {"core", "crypto"},
    "vision": {"core", "crypto", "protocol"},
    "mqtt": {"core", "crypto", "protocol"},
    "unit": {"core", "crypto", "protocol", "vision", "mqtt"},
    "carrier": {"core", "crypto", "protocol", "vision", "mqtt"},
    "fleet": {"core", "crypto", "protocol", "vision", "mqtt"},
    "lab": {"core", "crypto", "protocol", "vision", "mqtt", "unit", "carrier", "fleet"},
}

# Heavy or security-relevant third-party libraries and the only module (prefix) that imports each.
SOLE_IMPORTER = {
    "cryptography": "kycedge.crypto",
    "paho": "kycedge.mqtt.client",
    "ai_edge_litert": "kycedge.vision.runtime",
    "tflite_runtime": "kycedge.vision.runtime",
    "psycopg": "kycedge.carrier.store.pg",
    "PIL": "kycedge.vision.decode",
    "cbor2": "kycedge.protocol.envelope._cbor",
    "urllib3": "kycedge.unit.updates.tuf_client",
    "securesystemslib": "kycedge.fleet.repository",
    "tpm2_pytss": "kycedge.crypto.tpm",
    "pkcs11": "kycedge.crypto.pkcs11",
    "tuf": None,  # the unit's client and the fleet's repository each wrap their side (below)
}
TUF_IMPORTERS = {"kycedge.unit.updates.tuf_client", "kycedge.fleet.repository"}


def module_name(path: Path, root: Path = PKG) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path = PKG) -> list[tuple[int, str]]:
    """Every module ``path`` imports (absolute names; relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    me = module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            # `from kycedge import crypto` imports the module kycedge.crypto
            out.extend((node.lineno, f"{mod}.{a.name}") for a in node.names if mod == "kycedge")
    return out


def wing(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def violations(root: Path = PKG) -> list[str]:
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        me = module_name(path, root)
        mine = wing(me)
        if mine not in BELOW:
            found.append(f"{me}: module outside the floor plan (wing {mine!r})")
            continue
        for line, target in imports_of(path, root):
            top = target.split(".")[0]
            if top == "kycedge":
                theirs = wing(target)
                if target == "kycedge" or theirs == mine or theirs in BELOW[mine]:
                    continue
                if theirs not in BELOW and target.count(".") == 1 and mine:
                    continue  # a name from the top-level package such as __version__
                found.append(f"{me}:{line} imports {target} ({mine or 'kycedge'} may not import {theirs})")
            elif top in SOLE_IMPORTER:
                owner = SOLE_IMPORTER[top]
                ok = (me in TUF_IMPORTERS) if owner is None else (me == owner or me.startswith(owner + "."))
                if not ok:
                    found.append(f"{me}:{line} imports {target} (only {owner or TUF_IMPORTERS} may)")
    return found


def test_no_forbidden_import() -> None:
    assert violations() == []


def test_a_planted_upward_import_is_caught(tmp_path: Path) -> None:
    """The check can fail: plant a unit -> carrier and a protocol -> vision import in a copy."""
    import shutil

    copy = tmp_path / "kycedge"
    shutil.copytree(PKG, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "unit" / "planted.py").write_text("def f():\n    from kycedge.carrier import receiver\n")
    (copy / "protocol" / "planted.py").write_text("import kycedge.vision.pipeline\n")
    (copy / "mqtt" / "planted.py").write_text("from kycedge import fleet\n")
    (copy / "vision" / "planted.py").write_text("import paho.mqtt.client\n")
    found = violations(copy)
    assert len(found) == 4, found
    assert any("kycedge.unit.planted:2 imports kycedge.carrier" in f for f in found)
    assert any("kycedge.protocol.planted:1 imports kycedge.vision.pipeline" in f for f in found)
    assert any("kycedge.mqtt.planted:1 imports kycedge.fleet" in f for f in found)
    assert any("kycedge.vision.planted:1 imports paho.mqtt.client" in f for f in found)


@pytest.mark.parametrize("wing_name", sorted(w for w in BELOW if w))
def test_every_wing_exists(wing_name: str) -> None:
    assert (PKG / wing_name / "__init__.py").is_file()
