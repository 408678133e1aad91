"""Device identity files and the `kycedge keys` commands."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from kycedge import crypto
from kycedge.core.errors import KeyStoreError
from kycedge.unit import identity as keys
from kycedge.unit.cli import main


def test_init_creates_once_and_reloads(tmp_path: Path) -> None:
    state = tmp_path / "state"
    ident, created = keys.init_identity(state)
    assert created
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(state / keys.SIGNING_KEY_FILE).st_mode) == 0o600
    again, created2 = keys.init_identity(state)
    assert not created2
    assert again.key_id == ident.key_id
    assert again.public_key == ident.public_key
    pub = crypto.load_verify_key(state / keys.SIGNING_PUBLIC_FILE)
    assert crypto.key_id(pub) == ident.key_id
    crypto.verify(pub, again.signer.sign(b"x"), b"x")


def test_load_identity_missing_and_unsafe(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError) as ei:
        keys.load_identity(tmp_path)
    assert ei.value.reason == "missing-key"
    keys.init_identity(tmp_path / "s")
    os.chmod(tmp_path / "s" / keys.SIGNING_KEY_FILE, 0o644)
    with pytest.raises(KeyStoreError) as ei:
        keys.load_identity(tmp_path / "s")
    assert ei.value.reason == "unsafe-key-permissions"
    os.chmod(tmp_path / "s", 0o777)
    with pytest.raises(KeyStoreError):
        keys.init_identity(tmp_path / "s")


def test_csr_is_signed_by_the_tls_key_and_issuable(tmp_path: Path) -> None:
    pem = keys.make_device_csr(tmp_path, "dev-0001")
    csr = crypto.csr_from_pem(pem)
    assert crypto.csr_common_name(csr) == "dev-0001"
    assert (tmp_path / keys.TLS_CSR_FILE).read_bytes() == pem
    assert stat.S_IMODE(os.stat(tmp_path / keys.TLS_KEY_FILE).st_mode) == 0o600
    # the same TLS key is reused for a second CSR
    pem2 = keys.make_device_csr(tmp_path, "dev-0001")
    assert crypto.csr_from_pem(pem2).public_key() == csr.public_key()
    ca_key, ca_cert = crypto.make_ca("device CA")
    cert = crypto.issue_certificate(ca_key, ca_cert, csr, days=30)
    assert crypto.certificate_common_name(cert) == "dev-0001"


def test_cli_init_and_csr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "init", "--state-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    ident = keys.load_identity(tmp_path)
    assert f"key_id: {ident.key_id}" in out
    assert f"public_key: {ident.public_key.hex()}" in out
    assert "status: created" in out
    assert main(["keys", "csr", "--tenant", "acme", "--device", "dev-7", "--state-dir", str(tmp_path),
                 "--out", str(tmp_path / "x.csr")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("-----BEGIN CERTIFICATE REQUEST-----")
    assert crypto.csr_common_name(crypto.csr_from_pem((tmp_path / "x.csr").read_bytes())) == "acme/dev-7"
    # The CN is the broker identity: an id that is not one safe topic level is refused.
    assert main(["keys", "csr", "--tenant", "acme", "--device", "O=x,CN=y",
                 "--state-dir", str(tmp_path)]) == 2
    assert "device id: expected text matching" in capsys.readouterr().err
