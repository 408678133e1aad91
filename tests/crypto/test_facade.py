"""The crypto package's boundary: the only importer of ``cryptography``, no public test hook."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import kycedge
from kycedge import crypto

PKG = Path(kycedge.__file__).resolve().parent


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def test_only_crypto_imports_cryptography_and_nobody_imports_vectors() -> None:
    offenders = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG)
        mods = _imports(path)
        if rel.parts[0] != "crypto" and any(m.split(".")[0] == "cryptography" for m in mods):
            offenders.append(f"{rel}: imports cryptography")
        if rel.name != "_vectors.py" and any("_vectors" in m for m in mods):
            offenders.append(f"{rel}: imports the private vectors module")
    assert offenders == []


def test_hpke_seal_has_no_ephemeral_key_hook() -> None:
    assert "ephemeral_key" not in inspect.signature(crypto.hpke_seal).parameters
    from kycedge.protocol.envelope import seal

    assert "ephemeral_key" not in inspect.signature(seal).parameters


def test_facade_exports_resolve() -> None:
    for name in crypto.__all__:
        assert getattr(crypto, name) is not None, name
