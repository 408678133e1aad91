"""``kycedge-carrier serve``: the receiver behind the broker (shared subscription).

Each process subscribes to ``$share/<group>/kyc/v1/+/+/templates`` (QoS 1): the broker
hands every template to exactly one process of the group, so several processes (or
hosts) split the load. A worker thread ingests envelopes in batches
(:meth:`Receiver.handle_batch`, one storage transaction per batch), publishes each
receipt (QoS 1) to ``kyc/v1/{tenant}/{device}/receipts`` of the topic it came from, and
only then acknowledges the templates to the broker (manual PUBACK). A process killed
mid-batch therefore leaves its unacknowledged templates with the broker (redelivered
when it reconnects with the same client id) and with the unit (re-sent after its receipt
wait); the receiver's de-duplication answers repeats with the first receipt.

If storage fails (:class:`CarrierError`), the batch is not acknowledged and no receipt
is sent; the process pauses and reconnects so the broker redelivers.

A template whose envelope names a different device than its topic (the topic is the
broker-authenticated identity) is answered on the topic's receipts with the receiver's
verdict only if the receipt is addressed to that device; otherwise it is dropped and
logged (it cannot be a genuine unit's own envelope).
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kycedge.carrier.config import CarrierConfig
from kycedge.carrier.metrics import health as receiver_health
from kycedge.carrier.metrics import receiver_metrics
from kycedge.core.config import section
from kycedge.core.errors import CarrierError, ConfigError, IdError, KycEdgeError, UplinkError
from kycedge.core.logs import setup_logging
from kycedge.core.metrics import Health, Metric, MetricsServer
from kycedge.mqtt.config import UplinkConfig
from kycedge.protocol import ids, topics

__all__ = ["ReceiverService", "ServeConfig", "ServeFile", "register"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeConfig:
    """[serve] the receiver's MQTT consumer."""

    group: str = section("kyc-receivers", help="shared-subscription group (all processes use the same)")
    tenant: str = section("", help="consume only this tenant's units (empty = all)")
    batch_max: int = section(64, min=1, max=10_000, help="envelopes per storage transaction")
    batch_wait_s: float = section(0.005, min=0.0, max=5.0, help="gather a batch this long after the first")
    error_pause_s: float = section(1.0, min=0.01, max=600.0, help="pause after a storage error")
    metrics_host: str = section("127.0.0.1", help="address of the /metrics and /health listener")
    metrics_port: int = section(0, min=0, max=65535,
                                help="port of the /metrics (Prometheus) and /health listener; 0 = off")

    def __post_init__(self) -> None:
        try:
            ids.check_service_name(self.group, "serve.group")
            if self.tenant:
                ids.check_tenant(self.tenant, "serve.tenant")
        except IdError as e:
            raise ConfigError(e.message) from e


@dataclass(frozen=True)
class ServeFile:
    """The receiver process's TOML file: [carrier], [mqtt] and [serve] tables."""

    mqtt: UplinkConfig = section(help="broker connection (identity carrier-receiver)")  # noqa: RUF009
    carrier: CarrierConfig = section(  # noqa: RUF009
        default_factory=CarrierConfig, help="receiver keys and storage"
    )
    serve: ServeConfig = section(default_factory=ServeConfig, help="consumer settings")  # noqa: RUF009


@dataclass
class _Item:
    topic: str
    payload: bytes
    ack: Callable[[], None]


@dataclass
class ReceiverService:
    """Consume templates from ``transport`` into ``receiver``; ``start()`` / ``stop()``.

    ``receiver`` is a :class:`kycedge.carrier.Receiver` (anything with ``handle_batch``);
    ``transport`` an ``MqttClient(..., manual_ack=True)`` or a fake with
    ``subscribe_acked``.
    """

    receiver: Any
    transport: Any
    config: ServeConfig = field(default_factory=ServeConfig)
    counters: dict[str, int] = field(default_factory=lambda: {
        "received": 0, "receipts": 0, "no_receipt": 0, "topic_mismatch": 0, "storage_errors": 0,
        "batches": 0,
    })

    def __post_init__(self) -> None:
        self.outcomes: dict[tuple[str, str], int] = {}
        self.last_storage_error_at: float | None = None
        self._q: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.subscription = topics.shared_templates_subscription(
            self.config.group, self.config.tenant or None
        )

    def start(self) -> None:
        self.transport.subscribe_acked(self.subscription, self._on_template, 1)
        self.transport.start()
        self._thread = threading.Thread(target=self._run, name="kycedge-carrier-serve", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.transport.stop()

    def metrics(self) -> list[Metric]:
        return receiver_metrics(self.counters, dict(self.outcomes), queue_depth=self._q.qsize(),
                                connected=bool(self.transport.connected))

    def health(self) -> Health:
        t = self.last_storage_error_at
        return receiver_health(
            running=self._thread is not None and self._thread.is_alive() and not self._stop.is_set(),
            connected=bool(self.transport.connected), counters=self.counters,
            last_storage_error_age_s=None if t is None else time.monotonic() - t)

    def _on_template(self, topic: str, payload: bytes, ack: Callable[[], None]) -> None:
        self._q.put(_Item(topic, payload, ack))

    def _gather(self) -> list[_Item]:
        try:
            first = self._q.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.config.batch_wait_s
        while len(batch) < self.config.batch_max:
            try:
                batch.append(self._q.get_nowait())
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    batch.append(self._q.get(timeout=left))
                except queue.Empty:
                    break
        return batch

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self._gather()
            if not batch:
                continue
            try:
                self.process(batch)
            except CarrierError as e:
                self.counters["storage_errors"] += 1
                self.last_storage_error_at = time.monotonic()
                log.error("serve: storage failed, %d templates left unacknowledged for redelivery: %s",
                          len(batch), e)
                self._stop.wait(self.config.error_pause_s)
            except Exception:
                log.exception("serve: unexpected error; batch left unacknowledged")
                self._stop.wait(self.config.error_pause_s)

    def process(self, batch: list[_Item]) -> None:
        """Ingest one batch, publish its receipts, then acknowledge the templates."""
        self.counters["received"] += len(batch)
        self.counters["batches"] += 1
        outcomes = self.receiver.handle_batch([it.payload for it in batch])
        for it, out in zip(batch, outcomes, strict=True):
            key = (out.status or "none", out.reason)
            self.outcomes[key] = self.outcomes.get(key, 0) + 1
            try:
                dt = topics.parse_device_topic(it.topic)
            except KycEdgeError:
                dt = None
            if out.receipt is None or dt is None:
                self.counters["no_receipt"] += 1
                log.warning("serve: no receipt for a template on %r (%s)", it.topic[:120], out.reason)
                it.ack()
                continue
            if (out.tenant, out.device_id) != (dt.tenant, dt.device):
                # The envelope claims another unit than the authenticated topic: a receipt
                # for it would be addressed to that other unit, and cannot help the sender.
                self.counters["topic_mismatch"] += 1
                log.warning("serve: envelope for %s/%s arrived on %s's topic; not answered",
                            out.tenant, out.device_id, f"{dt.tenant}/{dt.device}")
                it.ack()
                continue
            try:
                self.transport.publish_nowait(str(dt.sibling("receipts")), out.receipt, qos=1)
            except UplinkError as e:  # the unit re-sends and gets the same receipt again
                log.warning("serve: receipt for %s not sent: %s", out.message_id, e)
            self.counters["receipts"] += 1
            it.ack()


# -- CLI --------------------------------------------------------------------------------


def register(sub: Any) -> None:
    p = sub.add_parser("serve", help="consume templates from the broker (shared subscription) and answer")
    p.add_argument("--config", type=Path, required=True, help="TOML with [carrier], [mqtt], [serve]")
    p.add_argument("--instance", default="0", help="distinguishes processes on one host (client id)")
    p.set_defaults(handler=_serve)


def load_serve_file(path: Path) -> ServeFile:
    from kycedge.core.config import load_toml

    return load_toml(path, ServeFile)


def _serve(args: argparse.Namespace) -> int:
    from kycedge.carrier.receiver import Receiver
    from kycedge.mqtt.client import MqttClient

    cfg = load_serve_file(args.config)
    if not logging.getLogger().handlers:
        # the unit's form (JSON, journald priority prefix under systemd), on stderr: stdout
        # carries the two lines scripts wait for ("consuming ...", "stopped: ...")
        setup_logging("info", sys.stderr)
    client_id = cfg.mqtt.client_id or f"carrier-receiver-{socket.gethostname()}-{args.instance}"
    try:
        ids.check_service_name(client_id.replace("/", "-"), "mqtt.client_id")
    except IdError as e:
        raise ConfigError(e.message) from e
    if cfg.mqtt.session_expiry_s > 300:
        log.warning("serve: mqtt.session_expiry_s = %d: while this process is down the broker keeps "
                    "handing it its share of templates (delivered late, after the units re-send); "
                    "0-60 s is recommended for receivers", cfg.mqtt.session_expiry_s)
    receiver = Receiver.from_config(cfg.carrier)
    transport = MqttClient(cfg.mqtt, client_id=client_id, manual_ack=True)
    svc = ReceiverService(receiver, transport, cfg.serve)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    svc.start()
    metrics = None
    if cfg.serve.metrics_port:
        metrics = MetricsServer(cfg.serve.metrics_host, cfg.serve.metrics_port, svc.metrics,
                                svc.health).start()
        log.info("serve: metrics and health on http://%s:%d/metrics and /health", cfg.serve.metrics_host,
                 metrics.port)
    log.info("serve: %s consuming %s (pid %d)", client_id, svc.subscription, os.getpid())
    print(f"kycedge-carrier serve: {client_id} consuming {svc.subscription}", flush=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        if metrics is not None:
            metrics.stop()
        svc.stop()
        receiver.close()
        c = svc.counters
        print(f"kycedge-carrier serve: {client_id} stopped: received={c['received']} "
              f"receipts={c['receipts']} "
              f"no_receipt={c['no_receipt']} storage_errors={c['storage_errors']}", flush=True)
    return 0
