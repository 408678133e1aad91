"""A complete kycedge set-up on one machine, in one temporary directory (demo, tests, tools).

:class:`Lab` provisions everything the way an operator would, with the project's own
code, and runs every part as on a real deployment:

- a fleet CA, a broker certificate and the receiver's client certificate
  (:class:`kycedge.lab.broker.Pki`), and the unit's certificate issued from the unit's own CSR;
- Mosquitto with the repository's ``deploy/mosquitto`` config (mutual TLS, identity from
  the certificate, ACLs, the guard plugin) on a free loopback port, stoppable and
  restartable: :class:`kycedge.lab.broker.Broker`, the same harness the tests and tools use;
- the carrier: fresh keys, the unit enrolled, references added from ID photos, and the
  receiver consuming templates (``ReceiverService`` over a manual-ack MQTT client);
- the unit: identity (``kycedge.unit.identity``), a TOML config, and the daemon started as a real
  subprocess (``python -m kycedge.unit.cli run --config …``) with ``$NOTIFY_SOCKET`` pointing
  at the lab, so READY=1 / WATCHDOG=1 / STOPPING=1 are observed exactly as systemd would.

Frames come from a replay source on ``scene/``; :meth:`Lab.show` changes what the
"camera" sees (symlinks to fixture files, or a generated empty scene as ``.y4m``).
Nothing is written outside the lab directory except the broker's guard plugin, compiled
once per source version into a per-user build directory (:func:`kycedge.lab.broker.build_guard`);
:meth:`Lab.close` stops every process.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kycedge.lab.broker import RECEIVER, Broker, Pki, free_port

__all__ = ["Lab", "approach", "write_y4m"]

# `kycedge run` with this interpreter, whether or not the console script is on PATH
DAEMON_CMD = (sys.executable, "-c", "import sys; from kycedge.unit.cli import main; sys.exit(main())")




def write_y4m(path: Path, frames: list[np.ndarray]) -> None:
    """Write RGB frames as a 4:4:4 YUV4MPEG2 file (what the replay source reads with numpy)."""
    h, w = frames[0].shape[:2]
    with open(path, "wb") as fh:
        fh.write(f"YUV4MPEG2 W{w} H{h} F15:1 Ip A1:1 C444\n".encode())
        for rgb in frames:
            r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
            y = 0.299 * r + 0.587 * g + 0.114 * b
            planes = (16 + y * 219 / 255, 128 + (b - y) / 1.772 * 224 / 255,
                      128 + (r - y) / 1.402 * 224 / 255)
            fh.write(b"FRAME\n")
            for p in planes:
                fh.write(np.clip(np.round(p), 0, 255).astype(np.uint8).tobytes())


def empty_scene(w: int = 640, h: int = 480) -> np.ndarray:
    """An empty counter in front of a wall: a soft gradient, no face."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 90 + 60 * (yy / h) + 20 * np.sin(xx / 40.0)
    rgb = np.stack([base, base * 0.95, base * 0.85], axis=2)
    out: np.ndarray = np.clip(rgb, 0, 255).astype(np.uint8)
    return out


def approach(photo: Path, size: tuple[int, int] = (640, 480)) -> list[np.ndarray]:
    """Frames of a customer walking up to the counter: far (no face found), then too small
    (move closer), then in place. Made from a photo with the project's own decoder."""
    from kycedge.unit.capture.replay import fit_within
    from kycedge.vision.decode import decode_image

    img = decode_image(photo.read_bytes())
    w, h = size
    frames = []
    # Scales measured with the shipped pipeline on obama2.jpg in a 640x480 frame: at 0.2 no
    # face is found, at 0.4 the eyes are ~20 px apart (move closer), from 0.6 it is ok.
    for scale, n in ((0.2, 2), (0.4, 3), (1.0, 10)):
        small = fit_within(img, int(w * scale), int(h * scale))
        canvas = np.full((h, w, 3), 110, np.uint8)
        sh, sw = small.shape[:2]
        y0, x0 = (h - sh) // 2, (w - sw) // 2
        canvas[y0:y0 + sh, x0:x0 + sw] = small
        frames += [canvas] * n
    return frames


@dataclass
class Lab:
    root: Path
    tenant: str = "demo"
    device: str = "unit-0001"
    session_timeout_s: float = 10.0
    receipt_wait_s: float = 15.0
    settle_s: float = 0.3
    best_of: int = 3
    session_extra: str = ""  # more [session] lines, e.g. "stuck_after_s = 2.0\n"
    api_extra: str = ""  # more [api] lines, e.g. "preview_enabled = true\n"
    # the unit's liveness challenge (needs a camera that can follow prompts; the replayed
    # stills cannot): off by default, and then the carrier takes this tenant under "report"
    liveness: bool = False
    selftest_image: Path | None = None  # [daemon] selftest_image
    # True: the "camera" delivers raw frames at camera_size (photos are decoded and scaled
    # here, in the lab process, and replayed as .y4m), as a real camera does; False: the
    # daemon's replay source decodes the JPEG/PNG files itself
    raw_frames: bool = False
    camera_size: tuple[int, int] = (1280, 720)
    daemon_env: dict[str, str] = field(default_factory=dict)
    # a TPM for the unit's signing key (TCTI; empty = software key) and the CAs of its EK
    # certificate: the unit is then enrolled by attestation and its key recorded as tpm
    tpm_tcti: str = ""
    tpm_ca_certificates: tuple[Path, ...] = ()
    port: int = 0
    pki: Pki | None = None
    api_port: int = 0  # the daemon's loopback TCP listener: the agent's web app (0 = none)
    broker: Broker | None = None
    daemon: subprocess.Popen[bytes] | None = None
    notify_log: list[tuple[float, str]] = field(default_factory=list)
    _receiver: Any = None
    _notify_sock: socket.socket | None = None
    _notify_thread: threading.Thread | None = None

    # ---- construction ---------------------------------------------------------------
    @classmethod
    def create(cls, root: Path | None = None, **kw: Any) -> Lab:
        root = Path(tempfile.mkdtemp(prefix="kycedge-lab-")) if root is None else Path(root)
        root.mkdir(parents=True, exist_ok=True)
        lab = cls(root=root, **kw)
        lab.port = free_port()
        if kw.get("api_port") is None:
            lab.api_port = free_port()
        return lab

    @property
    def app_url(self) -> str:
        """The agent's web app served by the daemon (loopback TCP)."""
        return f"http://127.0.0.1:{self.api_port}/app/"

    @property
    def unit_state(self) -> Path:
        return self.root / "unit" / "state"

    @property
    def scene(self) -> Path:
        return self.root / "scene"

    @property
    def api_socket(self) -> Path:
        return self.root / "run" / "api.sock"

    @property
    def config_path(self) -> Path:
        return self.root / "unit" / "kycedge.toml"

    @property
    def daemon_log(self) -> Path:
        return self.root / "unit" / "daemon.log"

    def provision(self, models_dir: Path, references: dict[str, Path]) -> dict[str, Any]:
        """PKI, broker config, carrier keys, unit identity + enrolment, references. Returns facts.

        The pipeline (``models_dir``) is loaded only to enrol ``references`` from photos.
        """
        from kycedge.carrier.config import CarrierConfig, TenantPolicy
        from kycedge.carrier.keyring import init_keys
        from kycedge.carrier.receiver import Receiver
        from kycedge.fleet import provision
        from kycedge.unit import identity as keys
        from kycedge.vision.pipeline import Pipeline

        pki = self.pki = Pki.create(self.root / "pki", name="kycedge demo CA", days=2)
        pki.service(RECEIVER)
        self.broker = Broker(self.root / "broker", pki, port=self.port)

        carrier_cfg = CarrierConfig(
            state_dir=self.root / "carrier", tpm_ca_certificates=self.tpm_ca_certificates,
            tenants=() if self.liveness else (TenantPolicy(tenant=self.tenant, liveness="report"),))
        init_keys(carrier_cfg)
        self.carrier_config = carrier_cfg

        identity, _ = keys.init_identity(self.unit_state, tpm_tcti=self.tpm_tcti)
        identity.close()
        csr = keys.make_device_csr(self.unit_state, provision.device_common_name(self.tenant, self.device))
        issued = provision.issue_device(pki.ca_dir, self.tenant, self.device, pki.dir / "unit", csr_pem=csr,
                                        days=2)

        added = {}
        self.threshold, self.model = 0.0, ""
        with Receiver.from_config(carrier_cfg) as rx:
            if identity.key_protection == "tpm":
                self._enrol_attested(rx)
            else:
                rx.registry.enroll(self.tenant, self.device, identity.public_key)
            record = rx.registry.lookup(self.tenant, self.device, identity.key_id)
            if references:
                pipe = Pipeline.load(models_dir)
                for ref, photo in references.items():
                    rx.references.add_image(self.tenant, ref, photo.read_bytes(), pipe)
                    added[ref] = photo.name
                self.threshold = float(pipe.threshold)
                self.model = f"{pipe.model_id}@{pipe.model_version}"
                del pipe
        self._write_unit_config(models_dir, issued.cert, pki.ca_cert)
        return {"device_key_id": identity.key_id, "references": added, "threshold": self.threshold,
                "model": self.model, "algorithm": record.signature_alg if record else "",
                "key_protection": record.key_protection if record else "",
                "attested": bool(record and record.attestation)}

    def _enrol_attested(self, rx: Any) -> None:
        """The three-message attested enrolment (docs/tpm.md), both sides in this process."""
        from kycedge.carrier.attest import enroll_attested, make_challenge
        from kycedge.unit import attestation

        request = attestation.request(self.unit_state, self.tpm_tcti, self.tenant, self.device)
        challenge = make_challenge(self.carrier_config, request)
        proof = attestation.activate(self.tpm_tcti, challenge)
        enroll_attested(rx.registry, self.carrier_config, request, proof, tenant=self.tenant,
                        device_id=self.device)

    def _write_unit_config(self, models_dir: Path, cert: Path, ca: Path) -> None:
        from kycedge import crypto

        ck = self.carrier_config
        hpke_priv = ck.hpke_key_paths()[0]
        hpke_pub = hpke_priv.with_suffix(".pub")
        rk_pub = ck.receipt_key_path.with_suffix(".pub")
        hpke_id = crypto.key_id(crypto.load_kem_public_key(hpke_pub))
        rk_id = crypto.key_id(crypto.load_verify_key(rk_pub))
        self.scene.mkdir(exist_ok=True)
        self.api_socket.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(f"""\
# kycedge unit config written by kycedge.lab.harness (the demo set-up)
[daemon]
tenant = "{self.tenant}"
device_id = "{self.device}"
state_dir = "{self.unit_state}"
models_dir = "{models_dir}"
tpm_tcti = "{self.tpm_tcti}"
stop_grace_s = 5.0
status_interval_s = 1.0
{f'selftest_image = "{self.selftest_image}"' if self.selftest_image else ""}

[capture]
source = "replay"
replay_path = "{self.scene}"
replay_fps = 15.0
width = {self.camera_size[0]}
height = {self.camera_size[1]}

[session]
timeout_s = {self.session_timeout_s}
settle_s = {self.settle_s}
best_of = {self.best_of}
receipt_wait_s = {self.receipt_wait_s}
{self.session_extra}
[liveness]
enabled = {"true" if self.liveness else "false"}

[api]
socket_path = "{self.api_socket}"
tcp_port = {self.api_port}
{self.api_extra}
[carrier_keys]
hpke = [{{ key_id = "{hpke_id}", public_key_file = "{hpke_pub}" }}]
receipt = [{{ key_id = "{rk_id}", public_key_file = "{rk_pub}" }}]

[outbox]
retry_initial_s = 2.0
retry_max_s = 10.0

[uplink]
host = "127.0.0.1"
port = {self.port}
ca_file = "{ca}"
cert_file = "{cert}"
key_file = "{self.unit_state / 'device-tls.pem'}"
reconnect_min_s = 1
reconnect_max_s = 2
connect_timeout_s = 3.0
publish_timeout_s = 3.0

[forwarder]
idle_poll_s = 0.2
""")

    # ---- the broker ---------------------------------------------------------------------
    def _broker(self) -> Broker:
        if self.broker is None:
            raise RuntimeError("Lab.provision() first: it writes the broker's certificates and config")
        return self.broker

    def start_broker(self, timeout_s: float = 10.0) -> None:
        self._broker().start(timeout_s)

    def stop_broker(self) -> None:
        if self.broker is not None:
            self.broker.stop()

    @property
    def broker_running(self) -> bool:
        return self.broker is not None and self.broker.running

    # ---- the carrier receiver ----------------------------------------------------------
    def start_receiver(self) -> None:
        from kycedge.carrier.receiver import Receiver
        from kycedge.carrier.serve import ReceiverService
        from kycedge.mqtt.client import MqttClient
        from kycedge.mqtt.config import UplinkConfig

        if self.pki is None:
            raise RuntimeError("Lab.provision() first: it issues the receiver's certificate")
        rx_creds = self.pki.service(RECEIVER)
        cfg = UplinkConfig(host="127.0.0.1", port=self.port, ca_file=rx_creds.ca, cert_file=rx_creds.cert,
                           key_file=rx_creds.key, reconnect_min_s=1, reconnect_max_s=2)
        rx = Receiver.from_config(self.carrier_config)
        transport = MqttClient(cfg, client_id=f"{RECEIVER}-lab-{os.getpid()}", manual_ack=True)
        self._receiver = ReceiverService(rx, transport)
        self._receiver.start()

    def stop_receiver(self) -> None:
        if self._receiver is not None:
            self._receiver.stop(timeout_s=5)
            self._receiver.receiver.close()
            self._receiver = None

    # ---- the unit's daemon -------------------------------------------------------------
    def show(self, *photos: Path, empty: bool = False) -> None:
        """What the camera sees from the next session on: these photos, or an empty scene."""
        for p in self.scene.iterdir():
            p.unlink()
        if empty:
            write_y4m(self.scene / "empty.y4m", [empty_scene()])
        for i, p in enumerate(photos):
            if self.raw_frames:
                (self.scene / f"{i:02d}-{p.stem}.y4m").symlink_to(self._raw_clip(p))
            else:
                (self.scene / f"{i:02d}-{p.name}").symlink_to(p.resolve())

    def show_clip(self, name: str, frames: list[np.ndarray]) -> None:
        """The camera sees these frames in order (then loops), e.g. a customer walking up."""
        for p in self.scene.iterdir():
            p.unlink()
        write_y4m(self.scene / f"{name}.y4m", frames)

    def _raw_clip(self, photo: Path) -> Path:
        from kycedge.unit.capture.replay import fit_within
        from kycedge.vision.decode import decode_image

        out = self.root / "frames" / f"{photo.stem}.y4m"
        if not out.exists():
            out.parent.mkdir(exist_ok=True)
            rgb = fit_within(decode_image(photo.read_bytes()), *self.camera_size)
            write_y4m(out, [rgb])
        return out

    def _start_notify(self) -> str:
        path = self.root / "run" / "notify.sock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(str(path))
        s.settimeout(0.2)
        self._notify_sock = s
        self.notify_log = []

        def pump() -> None:
            while self._notify_sock is s:
                try:
                    msg = s.recv(4096).decode("utf-8", "replace")
                except TimeoutError:
                    continue
                except OSError:
                    return
                self.notify_log.append((time.monotonic(), msg))

        self._notify_thread = threading.Thread(target=pump, name="lab-notify", daemon=True)
        self._notify_thread.start()
        return str(path)

    def start_daemon(self, timeout_s: float = 60.0, *, config: Path | None = None) -> float:
        """Start ``kycedge run``; return seconds until READY=1 (as systemd would see it)."""
        notify = self._start_notify()
        env = {**os.environ, "NOTIFY_SOCKET": notify, "WATCHDOG_USEC": "10000000", **self.daemon_env}
        env.pop("WATCHDOG_PID", None)
        log = open(self.daemon_log, "ab")  # noqa: SIM115 - handed to the child
        t0 = time.monotonic()
        self.daemon = subprocess.Popen(
            [*DAEMON_CMD, "run", "--config", str(config or self.config_path)],
            stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        deadline = t0 + timeout_s
        while time.monotonic() < deadline:
            for t, msg in list(self.notify_log):
                if "READY=1" in msg.split("\n"):
                    return t - t0
            if self.daemon.poll() is not None:
                raise RuntimeError(f"the daemon exited with code {self.daemon.returncode} before READY=1:\n"
                                   + self.daemon_log.read_text(errors="replace")[-3000:])
            time.sleep(0.01)
        raise RuntimeError(f"no READY=1 from the daemon within {timeout_s} s")

    def stop_daemon(self, timeout_s: float = 30.0) -> tuple[int, float]:
        """SIGTERM and wait; ``(exit code, seconds)``."""
        if self.daemon is None:
            return 0, 0.0
        t0 = time.monotonic()
        if self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
        try:
            code = self.daemon.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
            code = self.daemon.wait()
        self.daemon = None
        sock, self._notify_sock = self._notify_sock, None
        if sock is not None:
            sock.close()
        return code, time.monotonic() - t0

    def client(self) -> Any:
        from kycedge.unit.client import ApiClient

        return ApiClient(unix_socket=str(self.api_socket), timeout_s=120.0)

    def close(self, *, remove: bool = True) -> None:
        with contextlib.suppress(Exception):
            self.stop_daemon(timeout_s=15)
        with contextlib.suppress(Exception):
            self.stop_receiver()
        with contextlib.suppress(Exception):
            self.stop_broker()
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
