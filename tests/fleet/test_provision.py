"""Fleet PKI: CA, unit and service certificates (kycedge.fleet.provision + kycedge-fleet)."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
from kycedge import crypto
from kycedge.fleet import provision
from kycedge.fleet.cli import main
from kycedge.fleet.provision import ProvisionError


def test_ca_device_service(tmp_path: Path) -> None:
    ca = provision.init_ca(tmp_path / "ca", days=30)
    assert stat.S_IMODE(ca.key.stat().st_mode) == 0o600
    with pytest.raises(ProvisionError) as ei:
        provision.init_ca(tmp_path / "ca")
    assert ei.value.reason == "ca-exists"
    dev = provision.issue_device(tmp_path / "ca", "acme", "shop-0001", tmp_path / "unit")
    cert = crypto.load_certificate(dev.cert)
    assert crypto.certificate_common_name(cert) == "acme/shop-0001"
    assert dev.key is not None
    assert stat.S_IMODE(dev.key.stat().st_mode) == 0o600
    assert dev.ca_cert.read_bytes() == ca.cert.read_bytes()
    srv = provision.issue_service(tmp_path / "ca", "broker", tmp_path / "b", server=True,
                                  dns_names=("localhost",), ip_addresses=("127.0.0.1",))
    assert crypto.certificate_common_name(crypto.load_certificate(srv.cert)) == "broker"


def test_device_from_csr_keeps_the_key_on_the_unit(tmp_path: Path) -> None:
    provision.init_ca(tmp_path / "ca")
    key = crypto.generate_tls_key()
    csr = crypto.csr_to_pem(crypto.make_csr(key, "acme/u7"))
    dev = provision.issue_device(tmp_path / "ca", "acme", "u7", tmp_path / "out", csr_pem=csr)
    assert dev.key is None
    assert not (tmp_path / "out" / "device.key").exists()
    with pytest.raises(ProvisionError) as ei:
        provision.issue_device(tmp_path / "ca", "acme", "u8", tmp_path / "out", csr_pem=csr)
    assert ei.value.reason == "csr-mismatch"
    assert "'acme/u8'" in ei.value.message
    assert "'acme/u7'" in ei.value.message


@pytest.mark.parametrize(("tenant", "device"), [("acme", "a/b"), ("ac+me", "u1"), ("acme", "#"), ("", "u1")])
def test_unsafe_identities_refused(tmp_path: Path, tenant: str, device: str) -> None:
    provision.init_ca(tmp_path / "ca")
    with pytest.raises(Exception, match="expected"):
        provision.issue_device(tmp_path / "ca", tenant, device, tmp_path / "out")


def test_missing_ca_is_clear(tmp_path: Path) -> None:
    with pytest.raises(ProvisionError) as ei:
        provision.issue_device(tmp_path / "nope", "acme", "u1", tmp_path / "out")
    assert ei.value.reason == "no-ca"


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ca", "init", "--dir", str(tmp_path / "ca")]) == 0
    assert main(["device", "issue", "--ca-dir", str(tmp_path / "ca"), "--tenant", "acme", "--device", "u1",
                 "--out", str(tmp_path / "u1")]) == 0
    assert main(["service", "issue", "--ca-dir", str(tmp_path / "ca"), "--name", "broker", "--server",
                 "--dns", "localhost", "--ip", "127.0.0.1", "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "issued acme/u1" in out
    assert main(["service", "issue", "--ca-dir", str(tmp_path / "ca"), "--name", "x y",
                 "--out", str(tmp_path / "b")]) == 2
    assert "bad-name" in capsys.readouterr().err


def test_console_script_help() -> None:
    r = subprocess.run([sys.executable, "-m", "kycedge.fleet.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    assert "ca" in r.stdout
