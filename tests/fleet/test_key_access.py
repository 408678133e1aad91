"""``--key-group``/``--key-owner``: the broker starts as provisioned, dropping to user mosquitto."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import socket
import ssl
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kycedge.fleet.cli import main
from kycedge.lab.broker import DEPLOY, GUARD_IN_CONF, MOSQUITTO, build_guard, free_port

ROOT = Path(__file__).resolve().parents[2]


def _have_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


needs_root_and_mosquitto = pytest.mark.skipif(
    os.geteuid() != 0 or not _have_user("mosquitto") or not Path(MOSQUITTO).exists(),
    reason="needs root, the mosquitto user and /usr/sbin/mosquitto (apt-get install mosquitto)")


@pytest.fixture
def etc() -> Iterator[Path]:
    """A directory the mosquitto user can traverse (pytest's tmp_path is 0700 root)."""
    d = Path(tempfile.mkdtemp(prefix="kycedge-keyaccess-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_csr_and_key_access_flags_exclude_each_other(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ca", "init", "--dir", str(tmp_path / "ca")]) == 0
    csr = tmp_path / "x.csr"
    csr.write_text("not read")
    assert main(["service", "issue", "--ca-dir", str(tmp_path / "ca"), "--name", "r", "--csr", str(csr),
                 "--key-group", "root", "--out", str(tmp_path / "o")]) == 2
    assert "expected a key generated here" in capsys.readouterr().err
    assert main(["service", "issue", "--ca-dir", str(tmp_path / "ca"), "--name", "r",
                 "--key-group", "no-such-group-kycedge", "--out", str(tmp_path / "o")]) == 2
    assert "expected an existing group" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # refused before anything was issued


@needs_root_and_mosquitto
@pytest.mark.broker
def test_broker_key_for_group_mosquitto_lets_the_broker_start_as_mosquitto(
        etc: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    certs = etc / "kycedge"
    # the documented commands (docs/deployment.md, "The broker")
    certs.mkdir(mode=0o750)
    os.chown(certs, 0, grp.getgrnam("mosquitto").gr_gid)
    assert main(["ca", "init", "--dir", str(tmp_path / "ca")]) == 0
    assert main(["service", "issue", "--ca-dir", str(tmp_path / "ca"), "--name", "broker", "--server",
                 "--dns", "localhost", "--ip", "127.0.0.1", "--key-group", "mosquitto",
                 "--out", str(certs)]) == 0
    assert "0640 :mosquitto" in capsys.readouterr().out
    st = (certs / "broker.key").stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o640)
    assert st.st_gid == grp.getgrnam("mosquitto").gr_gid
    shutil.copy2(DEPLOY / "acl", certs / "acl")
    port = free_port()
    conf = (DEPLOY / "mosquitto.conf").read_text().replace("/etc/mosquitto/kycedge/", f"{certs}/")
    conf = conf.replace("listener 8883", f"listener {port} 127.0.0.1").replace(
        "persistence true", "persistence false")
    if GUARD_IN_CONF in conf:  # the isolation plugin (ADR 0010), readable by user mosquitto
        guard = etc / "kycedge_guard.so"
        shutil.copy(build_guard(), guard)
        guard.chmod(0o755)
        conf = conf.replace(GUARD_IN_CONF, str(guard))
    assert "\nuser " not in conf  # mosquitto drops to its default user, mosquitto
    (etc / "mosquitto.conf").write_text(conf)
    proc = subprocess.Popen([MOSQUITTO, "-c", str(etc / "mosquitto.conf")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        ok = _handshake(port, tmp_path / "ca" / "ca.crt", proc)
        owner = pwd.getpwuid(os.stat(f"/proc/{proc.pid}").st_uid).pw_name
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0].decode(errors="replace")
    assert ok, out
    assert owner == "mosquitto", out
    assert "Permission denied" not in out


def _handshake(port: int, ca: Path, proc: subprocess.Popen[bytes]) -> bool:
    """A TLS handshake reaches the broker: it loaded its key after dropping privileges."""
    ctx = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), 1) as raw, \
                    ctx.wrap_socket(raw, server_hostname="localhost") as s:
                return s.version() is not None
        except ssl.SSLError:
            return True  # handshake reached the server (it wants a client certificate)
        except OSError:
            time.sleep(0.05)
    return False
