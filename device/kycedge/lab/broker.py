"""A real Mosquitto for tests and tools, configured from ``deploy/mosquitto/``.

The broker runs ``/usr/sbin/mosquitto`` with the repository's own ``mosquitto.conf`` and
``acl`` (only the certificate directory, the port and persistence are rewritten) on a
free 127.0.0.1 port, with a test CA and certificates made by the project's provisioning
code (:mod:`kycedge.fleet.provision`).

Use from pytest (other test packages may import these fixtures)::

    from kycedge.lab.broker import broker, pki  # noqa: F401  (re-export the fixtures)

    def test_x(broker, pki):
        unit = pki.device("acme", "unit-1")
        cfg = broker.uplink_config(unit)          # an UplinkConfig for kycedge.mqtt
        ...

or directly (tools/chaos.py)::

    pki = Pki.create(tmp / "pki"); b = Broker(tmp / "broker", pki); b.start(); ...; b.stop()

Faults: ``stop()`` (SIGTERM, persistence saved), ``kill()`` (SIGKILL, unsaved changes
lost), ``start()`` again on the same port and directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from kycedge.core.paths import data_dir
from kycedge.fleet import provision
from kycedge.mqtt.config import UplinkConfig

DEPLOY = data_dir("mosquitto")
MOSQUITTO = os.environ.get("KYCEDGE_MOSQUITTO", "/usr/sbin/mosquitto")
CERT_DIR_IN_CONF = "/etc/mosquitto/kycedge/"
RECEIVER = "carrier-receiver"
FLEET_ADMIN = "fleet-admin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Creds:
    """A client identity: certificate, key and the CA that signs the broker."""

    name: str
    cert: Path
    key: Path
    ca: Path


class Pki:
    """A test CA plus issued certificates, all made with ``kycedge.fleet.provision``."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca_dir = directory / "ca"
        self._cache: dict[str, Creds] = {}

    @classmethod
    def create(cls, directory: Path) -> Pki:
        p = cls(directory)
        provision.init_ca(p.ca_dir, "kycedge test CA", days=30)
        provision.issue_service(
            p.ca_dir, "broker", directory / "broker", server=True, dns_names=("localhost",),
            ip_addresses=("127.0.0.1",), days=30,
        )
        return p

    @property
    def ca_cert(self) -> Path:
        return self.ca_dir / "ca.crt"

    @property
    def broker_dir(self) -> Path:
        return self.dir / "broker"

    def device(self, tenant: str, device: str) -> Creds:
        key = f"device:{tenant}/{device}"
        if key not in self._cache:
            out = self.dir / "devices" / tenant / device
            issued = provision.issue_device(self.ca_dir, tenant, device, out, days=30)
            assert issued.key is not None
            self._cache[key] = Creds(issued.common_name, issued.cert, issued.key, issued.ca_cert)
        return self._cache[key]

    def service(self, name: str = RECEIVER) -> Creds:
        key = f"service:{name}"
        if key not in self._cache:
            out = self.dir / "services" / name
            issued = provision.issue_service(self.ca_dir, name, out, days=30)
            assert issued.key is not None
            self._cache[key] = Creds(name, issued.cert, issued.key, issued.ca_cert)
        return self._cache[key]


class Broker:
    """One mosquitto process (restartable on the same port and persistence directory)."""

    def __init__(self, directory: Path, pki: Pki, *, port: int | None = None, persistence: bool = True,
                 autosave_interval_s: int = 1) -> None:
        self.dir = directory
        self.pki = pki
        self.port = port or free_port()
        self.persistence = persistence
        self.autosave_interval_s = autosave_interval_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "mosquitto.log"
        self.conf_path = self.dir / "mosquitto.conf"
        self._write_conf()

    def _write_conf(self) -> None:
        certs = self.dir / "certs"
        certs.mkdir(exist_ok=True)
        for name in ("broker.crt", "broker.key"):
            shutil.copy2(self.pki.broker_dir / name, certs / name)
        os.chmod(certs / "broker.key", 0o600)
        shutil.copy2(self.pki.ca_cert, certs / "ca.crt")
        shutil.copy2(DEPLOY / "acl", certs / "acl")
        text = (DEPLOY / "mosquitto.conf").read_text()
        assert CERT_DIR_IN_CONF in text
        assert "listener 8883" in text
        text = text.replace(CERT_DIR_IN_CONF, str(certs) + "/")
        text = text.replace("listener 8883", f"listener {self.port} 127.0.0.1")
        persist_dir = self.dir / "persist"
        persist_dir.mkdir(exist_ok=True)
        text = text.replace(
            "persistence_location /var/lib/mosquitto/", f"persistence_location {persist_dir}/"
        )
        text = text.replace("persistence true", f"persistence {'true' if self.persistence else 'false'}")
        text = text.replace("autosave_interval 60", f"autosave_interval {self.autosave_interval_s}")
        if os.geteuid() == 0:
            text += "\nuser root\n"  # do not drop to 'mosquitto' (it cannot read the 0600 test key)
        self.conf_path.write_text(text)

    def start(self, timeout_s: float = 10.0) -> None:
        assert self.proc is None or self.proc.poll() is not None, "broker already running"
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf_path)], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}:\n{self.log()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout_s} s:\n{self.log()}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM: mosquitto saves its persistence database and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: whatever was not autosaved is lost."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def wipe_persistence(self) -> None:
        for p in (self.dir / "persist").glob("*"):
            p.unlink()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def uplink_config(self, creds: Creds | None, **overrides: Any) -> UplinkConfig:
        """An UplinkConfig for ``creds`` (None: TLS with no client certificate is not
        expressible in UplinkConfig, so pass a Creds; see ``tls_probe`` for that case)."""
        base = UplinkConfig(
            host="127.0.0.1", port=self.port, tls=creds is not None,
            ca_file=creds.ca if creds else None, cert_file=creds.cert if creds else None,
            key_file=creds.key if creds else None, connect_timeout_s=5.0, publish_timeout_s=5.0,
            reconnect_min_s=1, reconnect_max_s=2, keepalive_s=5,
        )
        return replace(base, **overrides)

    def tls_probe(self, cert: Path | None = None, key: Path | None = None, ca: Path | None = None) -> str:
        """Try a raw TLS handshake; returns "ok" or the error text (no client cert if None)."""
        ctx = ssl.create_default_context(cafile=str(ca or self.pki.ca_cert))
        if cert is not None and key is not None:
            ctx.load_cert_chain(str(cert), str(key))
        try:
            with socket.create_connection(("127.0.0.1", self.port), 3) as raw, ctx.wrap_socket(
                raw, server_hostname="localhost"
            ) as s:
                s.settimeout(3)
                # TLS 1.3: the server's rejection of the client cert arrives on first read/write.
                s.sendall(b"\x10\x00")
                data = s.recv(1)
                return "ok" if data is not None else "closed"
        except (OSError, ssl.SSLError) as e:
            return f"{type(e).__name__}: {e}"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if not Path(MOSQUITTO).exists():
        pytest.skip(f"mosquitto not found at {MOSQUITTO} (apt-get install mosquitto)")
    return Pki.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def broker(pki: Pki, tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker", pki)
    b.start()
    try:
        yield b
    finally:
        b.kill()
