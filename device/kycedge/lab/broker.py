"""The one Mosquitto harness: a real broker from ``deploy/mosquitto/`` for the demo, tests and tools.

:class:`Broker` runs ``/usr/sbin/mosquitto`` with the repository's own ``mosquitto.conf`` and
``acl`` on a free 127.0.0.1 port; only the certificate directory, the guard plugin's path,
the port and persistence are rewritten. The guard plugin
(``deploy/mosquitto/plugin/kycedge_guard.c``, ADR 0010) is compiled from source by
``deploy/mosquitto/plugin/build.sh`` on first use (once per source version, see
:func:`build_guard`). :class:`Pki` is a CA plus certificates made with the project's
provisioning code (:mod:`kycedge.fleet.provision`)::

    pki = Pki.create(tmp / "pki")
    broker = Broker(tmp / "broker", pki); broker.start()
    cfg = broker.uplink_config(pki.device("acme", "unit-1"))   # an UplinkConfig for kycedge.mqtt
    ...
    broker.stop()

Faults: ``stop()`` (SIGTERM, persistence saved), ``kill()`` (SIGKILL, unsaved changes
lost), ``start()`` again on the same port and directory. ``Broker(..., guard=False)``
writes the configuration as it was before ADR 0010 (identity from
``use_identity_as_username``, no plugin): only ``tools/bench_isolation.py`` uses it, to
show what the attacks did without the guard. Pytest fixtures live in
``tests/support/broker.py``; this module does not import pytest.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kycedge.core.paths import data_dir
from kycedge.fleet import provision
from kycedge.mqtt.config import UplinkConfig

__all__ = [
    "FLEET_ADMIN",
    "MOSQUITTO",
    "RECEIVER",
    "Broker",
    "BrokerHarnessError",
    "Creds",
    "Pki",
    "build_guard",
    "free_port",
]

DEPLOY = data_dir("mosquitto")
GUARD_SOURCE = DEPLOY / "plugin" / "kycedge_guard.c"
GUARD_BUILD = DEPLOY / "plugin" / "build.sh"
MOSQUITTO = os.environ.get("KYCEDGE_MOSQUITTO", shutil.which("mosquitto") or "/usr/sbin/mosquitto")
CERT_DIR_IN_CONF = "/etc/mosquitto/kycedge/"
GUARD_IN_CONF = "/usr/local/lib/kycedge/kycedge_guard.so"
RECEIVER = "carrier-receiver"
FLEET_ADMIN = "fleet-admin"


class BrokerHarnessError(RuntimeError):
    """The lab broker could not be built, configured or started (a set-up problem, not a finding)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_guard(cache_dir: Path | None = None) -> Path:
    """Compile the guard plugin (once per source version) and return the ``.so`` path.

    The file name carries a digest of the source and build script, so an edited source is
    rebuilt and concurrent processes share one build (written to a temporary name, then
    renamed). ``cache_dir`` defaults to ``$KYCEDGE_BUILD_DIR`` or a per-user directory in
    the system's temporary directory.
    """
    digest = hashlib.sha256(GUARD_SOURCE.read_bytes() + GUARD_BUILD.read_bytes()).hexdigest()[:16]
    root = cache_dir or Path(os.environ.get("KYCEDGE_BUILD_DIR")
                             or Path(tempfile.gettempdir()) / f"kycedge-build-{os.getuid()}")
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    if root.stat().st_uid != os.getuid():
        raise BrokerHarnessError(f"build directory {root} belongs to another user")
    out = root / f"kycedge_guard-{digest}.so"
    if out.exists():
        return out
    tmp = root / f".{out.name}.{os.getpid()}"
    try:
        done = subprocess.run(["sh", str(GUARD_BUILD), str(tmp)], capture_output=True, text=True,
                              timeout=120)
    except OSError as e:
        raise BrokerHarnessError(f"cannot run {GUARD_BUILD}: {e}") from e
    if done.returncode != 0:
        raise BrokerHarnessError(
            f"building the Mosquitto guard plugin failed ({GUARD_BUILD}, exit {done.returncode}); it "
            f"needs gcc and the Debian packages mosquitto-dev and libssl-dev:\n{done.stderr[-2000:]}")
    os.replace(tmp, out)
    return out


@dataclass(frozen=True)
class Creds:
    """A client identity: certificate, key and the CA that signs the broker."""

    name: str
    cert: Path
    key: Path
    ca: Path


class Pki:
    """A CA plus issued certificates, all made with ``kycedge.fleet.provision``."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca_dir = directory / "ca"
        self._cache: dict[str, Creds] = {}

    @classmethod
    def create(cls, directory: Path, *, name: str = "kycedge test CA", days: int = 30) -> Pki:
        p = cls(directory)
        provision.init_ca(p.ca_dir, name, days=days)
        provision.issue_service(
            p.ca_dir, "broker", directory / "broker", server=True, dns_names=("localhost",),
            ip_addresses=("127.0.0.1",), days=days,
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
                 autosave_interval_s: int = 1, guard: bool = True) -> None:
        self.dir = directory
        self.pki = pki
        self.port = port or free_port()
        self.persistence = persistence
        self.autosave_interval_s = autosave_interval_s
        self.guard = guard
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
        for needed in (CERT_DIR_IN_CONF, "listener 8883", f"plugin {GUARD_IN_CONF}\n"):
            if needed not in text:
                raise BrokerHarnessError(f"{DEPLOY / 'mosquitto.conf'} no longer contains {needed.strip()!r}")
        text = text.replace(CERT_DIR_IN_CONF, str(certs) + "/")
        text = text.replace("listener 8883", f"listener {self.port} 127.0.0.1")
        if self.guard:
            text = text.replace(GUARD_IN_CONF, str(build_guard()))
        else:  # the configuration before ADR 0010: identity from the certificate, no plugin
            text = "\n".join(line for line in text.splitlines() if not line.startswith("plugin"))
            text = text.replace("require_certificate true",
                                "require_certificate true\nuse_identity_as_username true")
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
        if self.running:
            raise BrokerHarnessError("broker already running")
        if not os.access(MOSQUITTO, os.X_OK):
            raise BrokerHarnessError(f"mosquitto not found at {MOSQUITTO}: install it (apt-get install "
                                     "mosquitto) or set KYCEDGE_MOSQUITTO")
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf_path)], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerHarnessError(
                    f"mosquitto exited with {self.proc.returncode}:\n{self.log()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.02)
        raise BrokerHarnessError(
            f"mosquitto did not listen on {self.port} within {timeout_s} s:\n{self.log()}")

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
