"""The unit and the receiver as separate processes (for kill -9 tests, chaos and benchmarks).

    python -m support.roles unit WORLD.json --device u1 --count 100 [--exit-when-drained]
    python -m support.roles receiver WORLD.json --instance 1

(with ``tests/`` on ``PYTHONPATH``). ``WORLD.json`` is written by :func:`write_world`:
broker port, certificate paths, carrier directory and the run's t0. The unit process
re-creates registrations 0..count-1 deterministically (see :mod:`support.kyc`), puts
each into its outbox (idempotently) and prints ``P <i>`` once the put is durable; the
forwarder sends them. It prints ``DRAINED`` when its outbox is empty.

The receiver process runs :class:`kycedge.carrier.serve.ReceiverService` (the code of
``kycedge-carrier serve``) and prints ``READY``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from kycedge.core.errors import OutboxError

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent


def write_world(path: Path, *, broker: Any, pki: Any, carrier_dir: Path, tenant: str, t0_ms: int,
                run: str, uplink: dict[str, Any] | None = None, outbox: dict[str, Any] | None = None,
                forwarder: dict[str, Any] | None = None, serve: dict[str, Any] | None = None,
                receiver_uplink: dict[str, Any] | None = None) -> None:
    rx = pki.service()
    world = {
        "port": broker.port, "ca": str(pki.ca_cert), "pki_dir": str(pki.dir),
        "receiver_cert": str(rx.cert), "receiver_key": str(rx.key),
        "carrier_dir": str(carrier_dir), "tenant": tenant, "t0_ms": t0_ms, "run": run,
        "uplink": uplink or {},
        # receivers: a short session (survives a broker restart with persistence and a quick
        # receiver restart; a receiver that stays dead holds its share of templates for at
        # most this long) -- see docs/decisions/0005-outbox-and-uplink.md
        "receiver_uplink": {"session_expiry_s": 60, **(receiver_uplink or {})},
        "outbox": outbox or {}, "forwarder": forwarder or {}, "serve": serve or {},
    }
    path.write_text(json.dumps(world, indent=1))


def spawn(role: str, world: Path, *args: str, log: Path | None = None,
          stdin: int | None = None) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    out = open(log, "a") if log else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    p = subprocess.Popen([sys.executable, "-m", "support.roles", role, str(world), *args],
                         stdout=subprocess.PIPE, stderr=out, text=True, env=env, stdin=stdin)
    if log:
        out.close()  # type: ignore[union-attr]
    return p


def _uplink(world: dict[str, Any], cert: str, key: str, extra: dict[str, Any] | None = None) -> Any:
    from kycedge.mqtt.config import UplinkConfig

    base = UplinkConfig(host="127.0.0.1", port=world["port"], ca_file=Path(world["ca"]),
                        cert_file=Path(cert), key_file=Path(key), keepalive_s=5, reconnect_min_s=1,
                        reconnect_max_s=1, publish_timeout_s=5.0)
    return replace(base, **{**world["uplink"], **(extra or {})})


def run_unit(world: dict[str, Any], a: argparse.Namespace) -> int:
    from kycedge.carrier.config import CarrierConfig
    from kycedge.core.config import from_mapping
    from kycedge.fleet import provision
    from kycedge.mqtt.client import MqttClient
    from kycedge.protocol import ids
    from kycedge.unit.forwarder import Forwarder, ForwarderConfig, offline_will
    from kycedge.unit.outbox import Outbox, OutboxConfig

    from support.kyc import Carrier

    tenant, device = world["tenant"], a.device
    workdir = Path(a.workdir or Path(world["carrier_dir"]).parent / "units" / device)
    carrier = Carrier(Path(world["carrier_dir"]), CarrierConfig(state_dir=Path(world["carrier_dir"])))
    unit = carrier.enroll(workdir, tenant, device, run=world["run"], t0_ms=world["t0_ms"],
                          register=not a.no_enroll)
    cert_dir = workdir / "tls"
    if not (cert_dir / "device.crt").exists():
        provision.issue_device(Path(world["pki_dir"]) / "ca", tenant, device, cert_dir, days=30)
    ob = Outbox(workdir / "outbox.sqlite", from_mapping(OutboxConfig, world["outbox"]))
    transport = MqttClient(_uplink(world, str(cert_dir / "device.crt"), str(cert_dir / "device.key")),
                           client_id=ids.device_common_name(tenant, device),
                           will=offline_will(tenant, device))
    fw = Forwarder(ob, transport, tenant=tenant, device=device, verify_receipt=unit.verify,
                   config=from_mapping(ForwarderConfig, world["forwarder"]))
    if not a.hold:
        fw.start()
    for i in range(a.start, a.start + a.count):
        mid = str(unit.message_id(i))
        if ob.contains(mid) or ob.receipt(mid) is not None:
            print(f"P {i}", flush=True)
            continue
        try:
            ob.put(mid, unit.seal(i).data)
        except OutboxError as e:
            if e.reason != "duplicate-id":
                raise
        fw.wake()
        print(f"P {i}", flush=True)
        if a.interval_s:
            time.sleep(a.interval_s)
    if a.hold:
        print("QUEUED", flush=True)
        sys.stdin.readline()
        fw.start()
    while True:
        if ob.stats().count == 0:
            print("DRAINED", flush=True)
            if a.exit_when_drained:
                fw.stop()
                return 0
            time.sleep(0.5)
        time.sleep(0.05)


def run_receiver(world: dict[str, Any], a: argparse.Namespace) -> int:
    from kycedge.carrier.config import CarrierConfig
    from kycedge.carrier.receiver import Receiver
    from kycedge.carrier.serve import ReceiverService, ServeConfig
    from kycedge.core.config import from_mapping
    from kycedge.mqtt.client import MqttClient

    rx = Receiver.from_config(CarrierConfig(state_dir=Path(world["carrier_dir"])))
    transport = MqttClient(_uplink(world, world["receiver_cert"], world["receiver_key"],
                                   world.get("receiver_uplink")),
                           client_id=f"carrier-receiver-{a.instance}", manual_ack=True)
    serve = dict(world["serve"])
    if a.group:
        serve["group"] = a.group
    svc = ReceiverService(rx, transport, from_mapping(ServeConfig, serve))
    svc.start()
    if not transport.wait_connected(10):
        print(f"FAILED {transport.last_error}", flush=True)
        return 1
    print("READY", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    svc.stop()
    rx.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="support.roles")
    p.add_argument("role", choices=["unit", "receiver"])
    p.add_argument("world", type=Path)
    p.add_argument("--device", default="u1")
    p.add_argument("--workdir")
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--interval-s", type=float, default=0.0)
    p.add_argument("--exit-when-drained", action="store_true")
    p.add_argument("--hold", action="store_true", help="unit: queue everything, print QUEUED, start "
                   "forwarding when a line arrives on stdin")
    p.add_argument("--no-enroll", action="store_true",
                   help="unit: do not enrol the unit at the carrier (someone enrols it later)")
    p.add_argument("--instance", default="1")
    p.add_argument("--group", default="", help="receiver: override the world's share group")
    a = p.parse_args(argv)
    logging.basicConfig(level=os.environ.get("KYCEDGE_LOG", "WARNING"),
                        format=f"%(asctime)s {a.role} %(levelname)s %(name)s: %(message)s")
    world = json.loads(a.world.read_text())
    return run_unit(world, a) if a.role == "unit" else run_receiver(world, a)


if __name__ == "__main__":
    sys.exit(main())
