"""The unit-side update loop: poll timer + retained announce message, one state machine.

States (``UpdateReport.state``)::

    idle ─► checking ─► downloading ─► self-testing ─► switching ─► trial ─► idle
               │             │              │              │          │
               └─────────────┴──────────────┴──────────────┴──────────┴─► idle (reason)

Before ``switching`` nothing touches what the daemon serves: every failure (metadata,
download, hash, self-test) ends in ``idle`` with ``outcome="failed"`` and a reason. After
the switch the daemon's ``reload_models`` hook loads the new set (it keeps serving with
the old pipeline until the new one is loaded), then ``health_check`` must pass
``health_checks`` times; otherwise the agent rolls back, reloads the old set and reports
``outcome="rolled-back"`` with the reason. Every transition is reported through the
``report`` hook (the daemon publishes it on the retained status topic); every failure
and rollback is also logged (WARNING, with the reason and message) once.

A bundle that fails its self-test is recorded as rejected (with why) in the store's
journal, like a rolled-back one, and its staged set is removed: it is not downloaded or
tested again. A later check that picks a rejected bundle reports the recorded outcome
and reason again (not ``up-to-date``), so the retained status keeps saying why the unit
stays where it is.

The announce message (retained, ``fleet/v1/{tenant}/bundles``) is untrusted: it only
wakes the loop; what gets installed is decided by the signed TUF metadata.
"""

from __future__ import annotations

import contextlib
import logging
import random
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from kycedge import __version__
from kycedge.core.errors import KycEdgeError, MessageError
from kycedge.protocol.bundle import BundleManifest
from kycedge.protocol.rollout import ROLLOUT_TARGET, choose, parse_rollout
from kycedge.protocol.status import UpdateReport, parse_announce
from kycedge.protocol.update_errors import SelfTestError, SwitchError
from kycedge.unit.updates.config import UpdatesConfig
from kycedge.unit.updates.selftest import run_selftest
from kycedge.unit.updates.stage import stage_bundle
from kycedge.unit.updates.switch import ModelStore, Recovery

__all__ = ["UpdateAgent", "UpdateReport"]

log = logging.getLogger(__name__)
SelfTest = Callable[[Path, BundleManifest], object]


class UpdateAgent:
    """Fetch, verify, self-test, switch and (if needed) roll back model bundles."""

    def __init__(
        self,
        config: UpdatesConfig,
        *,
        device_id: str,
        reload_models: Callable[[Path], None],
        health_check: Callable[[], bool],
        report: Callable[[UpdateReport], None] | None = None,
        transport: Any = None,
        selftest: SelfTest | None = None,
        firmware_version: str = __version__,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.device_id = device_id
        self.store = ModelStore(config.state_dir)
        self._reload = reload_models
        self._health = health_check
        self._report = report or (lambda _s: None)
        self._transport = transport
        self._selftest = selftest or (lambda p, m: run_selftest(
            p, m, tolerance_cap=config.selftest_tolerance_cap))
        self._fw = firmware_version
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._status = self._make("idle", "none")
        self._recovered = False
        self.last_client: Any = None   # the RepositoryClient of the last check (for tests/bench)

    # ---- status ----------------------------------------------------------------------
    def _make(self, state: str, outcome: str, **kw: Any) -> UpdateReport:
        m = self.store.manifest()
        model_id, model_version = self.store.model_of()
        return UpdateReport(state=state, outcome=outcome,
                            bundle_version=m.bundle_version if m else 0,
                            model_id=model_id, model_version=model_version,
                            at=self._clock(), **kw)

    def _set(self, state: str, outcome: str = "none", **kw: Any) -> UpdateReport:
        before = self._status
        self._status = self._make(state, outcome, **kw)
        st = self._status
        if st.outcome in ("failed", "rolled-back") and (st.outcome, st.reason, st.target_version,
                                                        st.message) != (before.outcome, before.reason,
                                                                        before.target_version,
                                                                        before.message):
            log.warning("update %s (%s), bundle %s: %s", st.outcome, st.reason, st.target_version,
                        st.message, extra={"outcome": st.outcome, "reason": st.reason,
                                           "target_version": st.target_version})
        with contextlib.suppress(Exception):  # a broken publisher must not stop updates
            self._report(self._status)
        return self._status

    @property
    def status(self) -> UpdateReport:
        return self._status

    # ---- lifecycle ---------------------------------------------------------------------
    def startup(self) -> Recovery:
        """Recover the store after a crash or power loss; call before loading models."""
        rec = self.store.recover(max_trial_boots=self.config.max_trial_boots)
        self.store.prune(self.config.keep_sets)  # stable store only; a trial keeps both sets
        self._recovered = True
        if rec.action in ("rolled-back", "undid-interrupted-switch", "repaired-link"):
            self._set("idle", "recovered" if rec.reason != "crash-loop" else "rolled-back",
                      reason=rec.reason, message=rec.message)
        return rec

    def on_announce(self, payload: bytes) -> bool:
        """A retained announce arrived: validate its shape and wake the loop (True)."""
        try:
            announced = parse_announce(payload)
        except MessageError:
            return False
        if announced.bundle_version <= self.store.installed_version():
            return False
        self._wake.set()
        return True

    def attach(self, transport: Any, tenant: str) -> str:
        """Subscribe to the retained announce topic on an uplink transport; returns the topic."""
        from kycedge.protocol.topics import fleet_topic

        topic = fleet_topic(tenant, "bundles")
        transport.subscribe(topic, lambda _t, payload: self.on_announce(payload), qos=1)
        return topic

    def run(self, stop: threading.Event) -> None:
        """Loop until ``stop``: finish a pending trial, then check on timer or announce.

        If the daemon did not call :meth:`startup` before loading its models, recovery
        runs here and a set it changes is reloaded through ``reload_models``.
        """
        if not self._recovered:
            before = self.store.current()
            rec = self.startup()
            if rec.current is not None and rec.current != before:
                with contextlib.suppress(Exception):
                    self._reload(rec.current)
        if self.store.journal().state == "trial":
            self._finish_trial()
        while not stop.is_set():
            try:
                self.check_now()
            except Exception as e:  # a bug must not end the update loop; report and go on
                self._set("idle", "failed", reason="internal-error", message=f"{type(e).__name__}: {e}")
            delay = self.config.poll_interval_s + random.uniform(0, self.config.poll_jitter_s)  # noqa: S311
            deadline = time.monotonic() + delay
            while not stop.is_set() and time.monotonic() < deadline:
                if self._wake.wait(timeout=min(1.0, max(0.0, deadline - time.monotonic()))):
                    self._wake.clear()
                    break

    # ---- one check ---------------------------------------------------------------------
    def _client(self) -> Any:
        from kycedge.unit.updates.tuf_client import RepositoryClient, Urllib3Transport

        c = self.config
        transport = self._transport or Urllib3Transport(
            connect_timeout_s=c.connect_timeout_s, read_timeout_s=c.read_timeout_s, ca_file=c.ca_file,
            header_deadline_s=c.slow_grace_s if c.min_download_bytes_per_s > 0 else None)
        try:
            root = c.trusted_root.read_bytes()
        except OSError as e:
            raise KycEdgeError(f"{c.trusted_root}: cannot read the trusted root: {e}",
                               reason="bad-trusted-root") from e
        return RepositoryClient(repository_url=c.repository_url, trusted_root=root,
                                metadata_dir=c.state_dir / "tuf", partial_dir=c.state_dir / "partial",
                                transport=transport, max_metadata_bytes=c.max_metadata_bytes,
                                retries=c.download_retries, backoff_s=c.retry_backoff_s,
                                min_bytes_per_s=c.min_download_bytes_per_s, slow_grace_s=c.slow_grace_s)

    def check_now(self) -> UpdateReport:
        """One full check; never raises for a bad repository, bundle or model."""
        if not self._lock.acquire(blocking=False):
            return self._status
        try:
            return self._check()
        finally:
            self._lock.release()

    def _check(self) -> UpdateReport:
        target: int | None = None
        try:
            if self.store.journal().state == "trial":
                return self._finish_trial()
            self._set("checking")
            client = self._client()
            self.last_client = client
            client.refresh()
            rollout = parse_rollout(client.read(ROLLOUT_TARGET, max_bytes=64 * 1024))
            target = choose(rollout, self.device_id, self.config.cohort)
            installed = self.store.installed_version()
            if target is None or target <= installed:
                # Nothing to fetch: partial downloads of withdrawn bundles are garbage.
                shutil.rmtree(self.config.state_dir / "partial", ignore_errors=True)
                return self._set("idle", "up-to-date", target_version=target)
            why = self.store.journal().rejection(target)
            if why is not None:
                # keep saying why the unit stays where it is (not "up-to-date")
                return self._set("idle", str(why.get("outcome", "rolled-back")), target_version=target,
                                 reason=str(why.get("reason", "rejected-before")),
                                 message=f"bundle {target} was rejected here before, not retried: "
                                         f"{why.get('message', '')}; waiting for a newer bundle")
            self._set("downloading", target_version=target)
            staged = stage_bundle(client, target, self.store.sets_dir, active=self.store.current(),
                                  firmware_version=self._fw, max_bundle_bytes=self.config.max_bundle_bytes)
            self._set("self-testing", target_version=target)
            try:
                self._selftest(staged.path, staged.manifest)
            except SelfTestError as e:
                # the bundle's fault: never download or test it again here
                self.store.reject(target, "failed", e.reason, e.message)
                if staged.path not in (self.store.current(), self.store.previous()):
                    shutil.rmtree(staged.path, ignore_errors=True)
                raise
            self._set("switching", target_version=target)
            self.store.activate(staged.path)
            return self._finish_trial()
        except KycEdgeError as e:
            return self._set("idle", "failed", target_version=target, reason=e.reason, message=e.message)

    def _finish_trial(self) -> UpdateReport:
        """Load the new set in the daemon, run health checks, then commit or roll back."""
        j = self.store.journal()
        new = self.store.current()
        target = self.store.installed_version()
        self._set("trial", target_version=target)
        if new is None:
            return self._rollback("load-failed", "current set disappeared during the trial")
        try:
            self._reload(new)
        except Exception as e:  # any failure of the new models: roll back
            reason = e.reason if isinstance(e, KycEdgeError) else type(e).__name__
            return self._rollback("load-failed", f"daemon could not load {new.name}: {reason}: {e}")
        for i in range(self.config.health_checks):
            try:
                ok = bool(self._health())
            except Exception as e:
                ok = False
                detail = f"{type(e).__name__}: {e}"
            else:
                detail = "returned false"
            if not ok:
                return self._rollback("health-check-failed",
                                      f"health check {i + 1}/{self.config.health_checks} on {new.name} "
                                      f"{detail}")
            if i + 1 < self.config.health_checks:
                self._sleep(self.config.health_interval_s)
        self.store.commit(self.config.keep_sets)
        return self._set("idle", "updated", target_version=target,
                         message=f"now serving {new.name} (was {j.from_set})")

    def _rollback(self, reason: str, message: str) -> UpdateReport:
        try:
            back = self.store.rollback(reason, message)
        except SwitchError as e:
            return self._set("idle", "failed", reason=e.reason, message=f"{message}; {e.message}")
        if back is not None:
            try:
                self._reload(back)
            except Exception as e:
                message = f"{message}; reloading {back.name} also failed: {e}"
        self.store.prune(self.config.keep_sets)
        st = self._set("idle", "rolled-back", reason=reason, message=message)
        return replace(st)
