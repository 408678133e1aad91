"""The daemon process: wiring, start-up order, main loop, signals, shutdown.

Start-up (``Daemon.start``), each step failing with one clear error and exit code 2::

    config (already validated) → logging → state dir → device identity (``kycedge keys init``)
    → carrier keys → outbox → model set (update store's current set, else the factory set)
    → pipeline loaded and SELF-TESTED → uplink + forwarder → session manager → local API
    → sd_notify READY=1

Main loop (``Daemon.run``, the main thread): every tick it checks the session manager's
health and only then pings the systemd watchdog (a capture step stuck for
``session.stuck_after_s`` stops the pings and systemd restarts the unit); it refreshes
STATUS= (queue depth, link, last upload); it applies SIGHUP (re-read the config, apply
the reloadable keys, log the rest as needing a restart); on SIGTERM/SIGINT it stops:
STOPPING=1, refuse new sessions, let the session in progress finish within
``daemon.stop_grace_s`` else cancel it, close the API, stop the forwarder (the outbox is
durable: nothing is lost), close the outbox, exit 0.

``reload_models(path)`` is the hook for the update agent: it loads and self-tests the new
set while the old one keeps serving, then swaps; a session in progress finishes on the
models it started with.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from kycedge import __version__, crypto
from kycedge.core.errors import KycEdgeError, ModelError
from kycedge.core.logs import setup_logging
from kycedge.mqtt import Transport, connect
from kycedge.protocol import envelope, ids
from kycedge.protocol.status import UpdateReport
from kycedge.unit.api import ApiServer
from kycedge.unit.capture.base import FrameSource
from kycedge.unit.capture.factory import make_source
from kycedge.unit.daemon import memory
from kycedge.unit.daemon import settings as settings_mod
from kycedge.unit.daemon.notify import Notifier, watchdog_interval_s
from kycedge.unit.daemon.observe import MetricsFile
from kycedge.unit.daemon.settings import Settings
from kycedge.unit.forwarder import Forwarder, offline_will
from kycedge.unit.identity import load_identity
from kycedge.unit.liveness import LivenessGate, pipeline_analyze
from kycedge.unit.outbox import Outbox
from kycedge.unit.sealer import DeviceSealer
from kycedge.unit.session import Analyzer, SessionManager
from kycedge.unit.updates.agent import UpdateAgent
from kycedge.vision.decode import encode_preview
from kycedge.vision.pipeline import Pipeline

__all__ = ["Daemon", "self_test"]

log = logging.getLogger(__name__)

AnalyzerLoader = Callable[[Path], Analyzer]


def self_test(analyzer: Analyzer, image: bytes | None = None) -> dict[str, Any]:
    """Exercise the models before READY: a blank frame must give no face; a face photo a template.

    Raises :class:`ModelError` (reason ``selftest-failed``) naming what went wrong.
    """
    t0 = time.perf_counter()
    blank = np.full((480, 640, 3), 128, np.uint8)
    res = analyzer.guide(blank)
    if res.ok:
        raise ModelError(f"self-test: expected no face in a blank frame, got {res.reason!r}",
                         reason="selftest-failed")
    out: dict[str, Any] = {"blank": res.reason}
    if image is not None:
        process = getattr(analyzer, "process_image_bytes", None)
        if process is None:
            raise ModelError("self-test: analyzer cannot decode images", reason="selftest-failed")
        r = process(image)
        t = r.template
        if not r.ok or t is None:
            raise ModelError(f"self-test: expected a template from the self-test photo, got {r.reason!r}",
                             reason="selftest-failed")
        norm = float(np.linalg.norm(t))
        if t.ndim != 1 or not np.isfinite(t).all() or abs(norm - 1.0) > 1e-3:
            raise ModelError(f"self-test: expected a finite unit-norm 1-D template, got shape {t.shape} "
                             f"norm {norm:.4f}", reason="selftest-failed")
        out["photo"] = "ok"
        out["dim"] = int(t.shape[0])
    out["ms"] = round((time.perf_counter() - t0) * 1000, 1)
    return out


def _pipeline_loader(s: Settings) -> AnalyzerLoader:
    def load(models_dir: Path) -> Analyzer:
        pipe: Analyzer = Pipeline.load(models_dir, config=s.vision)
        return pipe

    return load


class Daemon:
    """One unit's daemon. ``start()`` then ``run()`` (blocks until stopped) → exit code."""

    def __init__(
        self,
        settings: Settings,
        *,
        config_path: Path | None = None,
        notifier: Notifier | None = None,
        source: FrameSource | None = None,
        load_analyzer: AnalyzerLoader | None = None,
        install_signals: bool = True,
    ) -> None:
        self.settings = settings
        self.config_path = config_path
        self.notifier = notifier or Notifier()
        self._source = source
        self._load = load_analyzer or _pipeline_loader(settings)
        self._install_signals = install_signals
        self._umask: int | None = None
        self.stop_event = threading.Event()
        self.reload_event = threading.Event()
        self._reload_lock = threading.Lock()
        self.models_dir: Path | None = None
        self.started_mono = time.monotonic()
        self.ready_after_s: float | None = None
        self._unhealthy_since: float | None = None
        self.outbox: Outbox | None = None
        self.forwarder: Forwarder | None = None
        self.sessions: SessionManager | None = None
        self._gate: LivenessGate | None = None
        self.api: ApiServer | None = None
        self.agent: UpdateAgent | None = None
        self._agent_thread: threading.Thread | None = None
        self._receipt_keys: Mapping[str, crypto.VerifyKey] = {}
        self.device_key: dict[str, str] = {}  # key_id, algorithm, key_protection (software | tpm)
        self._selftest_image: bytes | None = None
        self.metrics = MetricsFile(settings.metrics, self)

    # ---- start-up -------------------------------------------------------------------
    def start(self) -> None:
        s = self.settings
        setup_logging(s.daemon.log_level)
        memory.limit_arenas(2)
        log.info("starting", extra={"version": __version__, "device_id": s.daemon.device_id,
                                    "tenant": s.daemon.tenant, "camera": s.capture.source})
        self._umask = os.umask(0o077)  # every state file it creates is private, whatever the umask
        state = s.daemon.state_dir
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
        identity = load_identity(state, tpm_tcti=s.daemon.tpm_tcti)
        self.device_key = {"key_id": identity.key_id, "algorithm": identity.algorithm,
                           "key_protection": identity.key_protection}
        log.info("device key", extra=self.device_key)
        carrier_keys = s.carrier_keys.load_hpke_keys()
        self._receipt_keys = s.carrier_keys.load_receipt_keys()
        self.outbox = Outbox(state / s.daemon.outbox_file, s.outbox)

        if s.daemon.selftest_image is not None:
            try:
                self._selftest_image = s.daemon.selftest_image.read_bytes()
            except OSError as e:
                raise ModelError(f"{s.daemon.selftest_image}: cannot read the self-test photo: "
                                 f"{e.strerror or e}", reason="selftest-failed") from e
        models_dir = self._initial_models_dir()
        analyzer = self._load_checked(models_dir)
        self.models_dir = models_dir

        tenant, device = s.daemon.tenant, s.daemon.device_id
        last_known: dict[str, Any] = {"firmware": __version__,
                                      "model": {"id": analyzer.model_id, "version": analyzer.model_version}}
        if self.agent is not None:
            last_known["update"] = self.agent.status.to_dict()
        transport = connect(s.uplink, client_id=ids.device_common_name(tenant, device),
                            will=offline_will(tenant, device, last_known))

        def verify(raw: bytes) -> envelope.Receipt:
            return envelope.verify_receipt(raw, self._receipt_keys, expected_device_id=device,
                                           expected_tenant=tenant)

        self.forwarder = Forwarder(self.outbox, transport, tenant=tenant, device=device,
                                   verify_receipt=verify, config=s.forwarder, status=self._status_extra)
        sealer = DeviceSealer(identity, carrier_keys, tenant=tenant, device_id=device, state_dir=state)
        source = self._source or make_source(s.capture)
        preview = encode_preview if s.api.preview_enabled else None  # the operator's choice; off by default
        gate = None
        if s.liveness.enabled:
            pipeline_analyze(analyzer)  # refuses to start on an analyzer without FaceMesh
            gate = LivenessGate(s.liveness, threshold=float(getattr(analyzer, "threshold", 1.0)))
        self._gate = gate
        self.sessions = SessionManager(source, analyzer, sealer, self.forwarder, s.session,
                                       after_session=memory.trim, preview=preview, liveness=gate,
                                       liveness_analyze=pipeline_analyze if gate else None)
        self.forwarder.receipts_to(self.sessions.deliver_receipt)  # verified once, one type
        self.api = ApiServer(s.api, self.sessions, self.info, self.message)
        self._start_updates(transport)
        self.api.start()
        self.forwarder.start()
        if self._install_signals:
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
            signal.signal(signal.SIGHUP, self._on_signal)
        self.ready_after_s = time.monotonic() - self.started_mono
        self.notifier.ready(status=self.status_line())
        log.info("ready", extra={"ready_after_s": round(self.ready_after_s, 3),
                                 "model": f"{analyzer.model_id}@{analyzer.model_version}",
                                 "api_socket": s.api.socket_path, "api_port": s.api.tcp_port})

    def _initial_models_dir(self) -> Path:
        """The factory set, or (updates enabled) the update store's current set after recovery."""
        s = self.settings
        if not s.updates.enabled:
            return s.daemon.models_dir
        self.agent = UpdateAgent(s.updates, device_id=s.daemon.device_id, reload_models=self.reload_models,
                                 health_check=self.health_check, report=self._on_update_status)
        rec = self.agent.startup()  # finish or undo an interrupted switch before loading anything
        current: Path | None = self.agent.store.current()
        if current is None:
            current = self.agent.store.seed(s.daemon.models_dir)
        log.info("model store", extra={"current": str(current), "recovery": str(getattr(rec, "action", ""))})
        return current

    def _load_checked(self, models_dir: Path) -> Analyzer:
        t0 = time.perf_counter()
        analyzer = self._load(models_dir)
        report = self_test(analyzer, self._selftest_image)
        log.info("models loaded and self-tested", extra={
            "models_dir": str(models_dir), "model": f"{analyzer.model_id}@{analyzer.model_version}",
            "selftest_blank": report["blank"], "selftest_photo": report.get("photo", "skipped"),
            "load_ms": round((time.perf_counter() - t0) * 1000, 1)})
        return analyzer

    def _start_updates(self, transport: Transport) -> None:
        if self.agent is None:
            return
        self.agent.attach(transport, self.settings.daemon.tenant)  # retained announces wake it
        self._agent_thread = threading.Thread(target=self.agent.run, args=(self.stop_event,),
                                              name="kycedge-updates", daemon=True)
        self._agent_thread.start()

    # ---- hooks ------------------------------------------------------------------------
    def reload_models(self, models_dir: Path) -> None:
        """Load and self-test ``models_dir`` while serving on the old set, then swap.

        Raises (ModelError…) and keeps the old set if the new one fails. A session in
        progress finishes on the models it started with.
        """
        with self._reload_lock:
            analyzer = self._load_checked(Path(models_dir))
            assert self.sessions is not None
            if self._gate is not None:
                pipeline_analyze(analyzer)
                self._gate.threshold = float(getattr(analyzer, "threshold", self._gate.threshold))
            self.sessions.reload_analyzer(analyzer)
            self.models_dir = Path(models_dir)
        log.info("models switched", extra={"models_dir": str(models_dir),
                                           "model": f"{analyzer.model_id}@{analyzer.model_version}"})

    def health_check(self) -> bool:
        return self.sessions is not None and self.sessions.healthy()[0]

    def _on_update_status(self, st: UpdateReport) -> None:
        d = st.to_dict()
        log.info("update status", extra={k: d[k] for k in ("state", "outcome", "bundle_version", "reason")})
        if self.forwarder is not None and d.get("outcome") not in (None, "none"):
            self.forwarder.publish_status({"update": d})

    def _status_extra(self) -> dict[str, Any]:
        a = self.sessions.analyzer if self.sessions else None
        out: dict[str, Any] = {"firmware": __version__,
                               "model": {"id": a.model_id, "version": a.model_version} if a else None}
        if self.agent is not None:  # the bundle served, until an update outcome replaces it
            out["update"] = self.agent.status.to_dict()
        return out

    @property
    def last_upload(self) -> float | None:
        """When the carrier last gave a final receipt for one of this unit's envelopes."""
        return self.forwarder.last_delivered_at if self.forwarder is not None else None

    # ---- API providers ---------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        s = self.settings
        assert self.sessions is not None
        a = self.sessions.analyzer
        ok, why = self.sessions.healthy()
        status = "busy" if self.sessions.active is not None else ("ready" if ok else "not-ready")
        if self.stop_event.is_set():
            status = "not-ready"
        fw = self.forwarder.stats() if self.forwarder is not None else {}
        return {"device_id": s.daemon.device_id, "tenant": s.daemon.tenant, "firmware": __version__,
                "model": {"id": a.model_id, "version": a.model_version},
                "status": status, "detail": why, "queue": fw.get("queue"),
                "delivery": fw.get("delivery", "unknown"),
                "link": {"connected": fw.get("connected", False), "error": fw.get("link_error", "")},
                "last_upload": self.last_upload, "sessions": dict(self.sessions.counts),
                "device_key": self.device_key}

    def message(self, message_id: str) -> dict[str, Any] | None:
        """The API's view of one message: queued (with the carrier's pre-authentication refusal
        as ``condition``, if any), or receipted (the outcome recorded when its final receipt
        was verified; not verified again here)."""
        if self.outbox is None:
            return None
        condition = self.outbox.condition(message_id)
        if condition is not None:  # queued; "condition": the carrier's pre-authentication refusal
            return {"message_id": message_id, "state": "queued", "condition": condition or None}
        ack = self.outbox.receipt(message_id)
        if ack is None:
            return None
        return {"message_id": message_id, "state": "receipted", "status": ack.status, "reason": ack.reason,
                "score": ack.score, "threshold": ack.threshold}

    def status_line(self) -> str:
        q = "?"
        if self.outbox is not None:
            try:
                st = self.outbox.stats()
                q = f"{st.count} queued ({st.bytes} B)" + (", FULL" if st.full else "")
            except KycEdgeError as e:
                q = f"outbox error {e.reason}"
        link = "up" if self.forwarder is not None and self.forwarder.transport.connected else "down"
        last = (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.last_upload))
                if self.last_upload else "never")
        busy = "session in progress; " if self.sessions is not None and self.sessions.active else ""
        return f"{busy}{q}; link {link}; last upload {last}"

    # ---- main loop --------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self.reload_event.set()
        else:
            self.stop_event.set()

    def run(self) -> int:
        wd = watchdog_interval_s()
        tick = min(1.0, wd / 4) if wd else 1.0
        next_status = 0.0
        while not self.stop_event.wait(tick):
            if self.reload_event.is_set():
                self.reload_event.clear()
                self.reload_config()
            self._watchdog()
            self.metrics.tick()
            now = time.monotonic()
            if now >= next_status:
                self.notifier.status(self.status_line())
                next_status = now + self.settings.daemon.status_interval_s
        return self.stop()

    def _watchdog(self) -> None:
        assert self.sessions is not None
        ok, why = self.sessions.healthy()
        if ok:
            if self._unhealthy_since is not None:
                log.info("pipeline healthy again; watchdog pings resumed")
            self._unhealthy_since = None
            self.notifier.watchdog()
        elif self._unhealthy_since is None:
            self._unhealthy_since = time.monotonic()
            log.error("pipeline stuck; watchdog pings withheld", extra={"detail": why})

    def reload_config(self) -> None:
        """SIGHUP: re-read the file; apply what is safe, report what needs a restart."""
        if self.config_path is None:
            return
        self.notifier.reloading()
        try:
            new = settings_mod.load(self.config_path)
        except KycEdgeError as e:
            log.error("config reload refused; keeping the running config", extra={"error": e.message})
            self.notifier.ready(status=self.status_line())
            return
        applied, restart = settings_mod.reload_diff(self.settings, new)
        d = self.settings.daemon
        self.settings = replace(self.settings, session=new.session, daemon=replace(
            d, log_level=new.daemon.log_level, status_interval_s=new.daemon.status_interval_s,
            stop_grace_s=new.daemon.stop_grace_s))
        logging.getLogger().setLevel(getattr(logging, new.daemon.log_level.upper()))
        if self.sessions is not None:
            self.sessions.config = new.session
        log.info("config reloaded", extra={"applied": ",".join(applied) or "nothing",
                                           "needs_restart": ",".join(restart) or "nothing"})
        self.notifier.ready(status=self.status_line())

    def stop(self) -> int:
        t0 = time.monotonic()
        self.stop_event.set()
        self.notifier.stopping(status="stopping: finishing the session in progress")
        outcome = "none"
        if self.sessions is not None:
            outcome = self.sessions.shutdown(self.settings.daemon.stop_grace_s)
        if self.api is not None:
            self.api.close()
        if self.forwarder is not None:
            self.forwarder.stop(timeout_s=3.0)
        if self._agent_thread is not None:
            self._agent_thread.join(timeout=2.0)
        self.metrics.tick(force=True)  # the last figures before the outbox closes
        if self.outbox is not None:
            self.outbox.close()
        if self._umask is not None:  # the caller's umask again (an in-process daemon: tests, lab)
            os.umask(self._umask)
            self._umask = None
        log.info("stopped", extra={"session": outcome, "stop_s": round(time.monotonic() - t0, 3)})
        self.notifier.close()
        return 0
