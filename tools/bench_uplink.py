#!/usr/bin/env python3
"""End-to-end uplink benchmark through Mosquitto on loopback (prints figures).

    .venv/bin/python tools/bench_uplink.py [--backlog 10000] [--latency-n 500 --rate 50]

Everything is real: the repository's Mosquitto config (mTLS, ACL), a unit's outbox +
forwarder + paho session (in this process), real sealed envelopes, the carrier receiver
(``kycedge.carrier.serve``) as separate processes sharing one subscription, signed
receipts verified by the unit before each envelope leaves the outbox.

1. one unit's backlog: ``--backlog`` envelopes are queued while the broker is down; the
   clock starts when the broker starts (the unit reconnects by itself) and stops when the
   outbox is empty (every envelope receipted): seconds and templates/s, one receiver;
2. receiver scaling: ``--units`` unit processes (``tests/support/roles.py``) queue
   ``--fleet-backlog`` envelopes in total with their forwarders held; time from starting
   all forwarders (broker and receivers up) until every outbox is empty, ONE receiver;
3. the same with TWO receiver processes (shared subscription), and the ratio;
4. capture-to-receipt latency with the broker up: envelopes sealed at ``--rate`` per
   second, time from the start of sealing to the verified receipt; p50 / p99 / max.
"""

from __future__ import annotations

import argparse
import logging
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from kycedge.lab.broker import Broker, Pki  # noqa: E402
from kycedge.mqtt.client import MqttClient  # noqa: E402
from kycedge.protocol import ids  # noqa: E402
from kycedge.unit.forwarder import Forwarder, ForwarderConfig, offline_will  # noqa: E402
from kycedge.unit.outbox import Outbox, OutboxConfig  # noqa: E402
from support.kyc import Carrier, Unit  # noqa: E402
from support.roles import spawn, write_world  # noqa: E402

TENANT = "acme"


def start_receivers(world: Path, n: int, log: Path, group: str) -> list[subprocess.Popen[str]]:
    """``n`` receiver processes in share group ``group`` (a fresh group per phase, so a
    receiver session left over from an earlier phase is never handed templates)."""
    procs = []
    for i in range(n):
        p = spawn("receiver", world, "--instance", f"{group}-{i + 1}", "--group", group, log=log)
        assert p.stdout is not None
        line = p.stdout.readline().strip()
        if line != "READY":
            raise RuntimeError(f"receiver did not start: {line!r} (see {log})")
        procs.append(p)
    return procs


def stop_all(procs: list[subprocess.Popen[str]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()


class Bench:
    def __init__(self, work: Path, args: argparse.Namespace) -> None:
        self.work = work
        self.args = args
        self.log = work / "roles.log"
        self.pki = Pki.create(work / "pki")
        self.broker = Broker(work / "broker", self.pki)
        self.broker.start()
        self.carrier = Carrier.create(work / "carrier")
        self.t0_ms = int(time.time() * 1000)
        self.world = work / "world.json"
        write_world(self.world, broker=self.broker, pki=self.pki, carrier_dir=self.carrier.dir, tenant=TENANT,
                    t0_ms=self.t0_ms, run="", serve={"group": "bench", "batch_max": args.rx_batch},
                    uplink={"max_inflight": args.window},
                    outbox={"inflight_window": args.window, "retry_initial_s": 10.0, "retry_max_s": 120.0},
                    forwarder={"batch_max": args.batch, "idle_poll_s": 0.05})
        self.ob_cfg = OutboxConfig(inflight_window=args.window, retry_initial_s=10.0, retry_max_s=120.0,
                                   max_count=1_000_000, max_bytes=4 * 2**30)
        self.fw_cfg = ForwarderConfig(batch_max=args.batch, idle_poll_s=0.05)

    def unit(self, name: str) -> Unit:
        return self.carrier.enroll(self.work / "units" / name, TENANT, name, t0_ms=self.t0_ms)

    def forwarder(self, unit: Unit, ob: Outbox, **kw: Any) -> Forwarder:
        creds = self.pki.device(TENANT, unit.device)
        cfg = self.broker.uplink_config(creds, max_inflight=self.args.window, reconnect_min_s=1,
                                        reconnect_max_s=1)
        t = MqttClient(cfg, client_id=ids.device_common_name(TENANT, unit.device),
                       will=offline_will(TENANT, unit.device))
        return Forwarder(ob, t, tenant=TENANT, device=unit.device, verify_receipt=unit.verify,
                         config=self.fw_cfg, **kw)

    def backlog(self, receivers: int) -> tuple[float, int]:
        name = f"backlog{receivers}"
        unit = self.unit(name)
        ob = Outbox(self.work / f"{name}.sqlite", self.ob_cfg)
        n = self.args.backlog
        t = time.perf_counter()
        for i in range(n):
            ob.put(str(unit.message_id(i)), unit.seal(i).data)
        print(f"  queued {n} sealed envelopes in {time.perf_counter() - t:.1f} s "
              f"({ob.stats().bytes / n:.0f} B each)", flush=True)
        procs = start_receivers(self.world, receivers, self.log, name)
        self.broker.stop()  # the link is down: the unit cannot deliver
        fw = self.forwarder(unit, ob)
        fw.start()
        time.sleep(1.0)
        assert ob.stats().count == n
        start = time.perf_counter()
        self.broker.start()
        while ob.stats().count:
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
        fw.stop()
        time.sleep(1.0)  # let the receivers settle (restarted broker: they reconnected too)
        stop_all(procs)
        assert fw.counters["accepted"] == n, fw.counters
        return elapsed, n

    def fleet(self, units: int, receivers: int, per_unit: int) -> tuple[float, int]:
        """``units`` unit processes each queue ``per_unit`` envelopes with their forwarder
        held; then all forwarders start at once (broker and receivers up): seconds until
        every unit's outbox is empty."""
        tag = f"f{units}x{receivers}"
        procs = start_receivers(self.world, receivers, self.log, tag)
        us = [spawn("unit", self.world, "--device", f"{tag}u{i}", "--count", str(per_unit),
                    "--exit-when-drained", "--hold", log=self.log, stdin=subprocess.PIPE)
              for i in range(units)]
        queued = [threading.Event() for _ in us]
        drained = [threading.Event() for _ in us]

        def read(i: int) -> None:
            assert us[i].stdout is not None
            for line in us[i].stdout:
                if line.startswith("QUEUED"):
                    queued[i].set()
                elif line.startswith("DRAINED"):
                    drained[i].set()

        for i in range(units):
            threading.Thread(target=read, args=(i,), daemon=True).start()
        for ev in queued:
            if not ev.wait(600):
                raise RuntimeError(f"units did not queue their backlog (see {self.log})")
        start = time.perf_counter()
        for u in us:
            assert u.stdin is not None
            u.stdin.write("go\n")
            u.stdin.flush()
        for ev in drained:
            if not ev.wait(600):
                raise RuntimeError(f"units did not drain (see {self.log})")
        elapsed = time.perf_counter() - start
        for u in us:
            u.wait(30)
        stop_all(procs)
        return elapsed, units * per_unit

    def latency(self) -> list[float]:
        unit = self.unit("latency")
        ob = Outbox(self.work / "latency.sqlite", self.ob_cfg)
        procs = start_receivers(self.world, 1, self.log, "latency")
        started: dict[str, float] = {}
        done: dict[str, float] = {}
        ev = threading.Event()

        def on_receipt(r: Any) -> None:
            done[str(r.message_id)] = time.perf_counter()
            if len(done) == self.args.latency_n:
                ev.set()

        fw = self.forwarder(unit, ob, on_receipt=on_receipt)
        fw.start()
        assert fw.transport.wait_connected(10)
        period = 1.0 / self.args.rate
        nxt = time.perf_counter()
        for i in range(self.args.latency_n):
            now = time.perf_counter()
            if now < nxt:
                time.sleep(nxt - now)
            nxt += period
            mid = str(unit.message_id(i))
            started[mid] = time.perf_counter()  # capture done: seal + durable put + send
            fw.submit(mid, unit.seal(i).data)
        ev.wait(60)
        fw.stop()
        stop_all(procs)
        return [done[m] - started[m] for m in started if m in done]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backlog", type=int, default=10_000)
    ap.add_argument("--latency-n", type=int, default=500)
    ap.add_argument("--units", type=int, default=2, help="unit processes in the receiver scaling runs")
    ap.add_argument("--fleet-backlog", type=int, default=6000,
                    help="envelopes over all units per scaling run")
    ap.add_argument("--rate", type=float, default=50.0, help="captures per second in the latency run")
    ap.add_argument("--window", type=int, default=512, help="outbox in-flight window")
    ap.add_argument("--batch", type=int, default=128, help="forwarder publish batch")
    ap.add_argument("--rx-batch", type=int, default=128, help="receiver storage batch")
    a = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="kycedge-bench-"))
    b = Bench(work, a)
    print(f"bench_uplink: mosquitto 127.0.0.1:{b.broker.port} (mTLS, ACL, persistence), window={a.window} "
          f"batch={a.batch} rx_batch={a.rx_batch}; work={work}", flush=True)
    try:
        print(f"[1] one unit, backlog of {a.backlog} queued while the broker is down, one receiver",
              flush=True)
        s1, n1 = b.backlog(1)
        r0 = n1 / s1
        print(f"  drained {n1} templates in {s1:.2f} s after the broker started = {r0:.0f} templates/s",
              flush=True)
        per = a.fleet_backlog // a.units
        print(f"[2] {a.units} unit processes x {per} queued, then all forwarders start; ONE receiver",
              flush=True)
        s2a, n2a = b.fleet(a.units, 1, per)
        r1 = n2a / s2a
        print(f"  one receiver: {n2a} templates in {s2a:.2f} s = {r1:.0f} templates/s", flush=True)
        print("[3] the same with TWO receivers (shared subscription)", flush=True)
        s2b, n2b = b.fleet(a.units, 2, per)
        r2 = n2b / s2b
        print(f"  two receivers: {n2b} templates in {s2b:.2f} s = {r2:.0f} templates/s", flush=True)
        print(f"  ratio two/one = {r2 / r1:.2f}", flush=True)
        print(f"[4] capture-to-receipt latency, broker up, {a.rate:.0f} captures/s, n={a.latency_n}",
              flush=True)
        lat = sorted(b.latency())
        if len(lat) < a.latency_n:
            print(f"  WARNING: only {len(lat)} of {a.latency_n} receipts arrived", flush=True)
        q = statistics.quantiles(lat, n=100)
        print(f"  latency p50={q[49] * 1000:.1f} ms p99={q[98] * 1000:.1f} ms max={lat[-1] * 1000:.1f} ms",
              flush=True)
        print(f"RESULT unit_backlog_rx1={r0:.0f}/s fleet_rx1={r1:.0f}/s fleet_rx2={r2:.0f}/s "
              f"ratio={r2 / r1:.2f} "
              f"backlog_{n1}_drain_s={s1:.1f} latency_p50_ms={q[49] * 1000:.1f} "
              f"latency_p99_ms={q[98] * 1000:.1f}")
    finally:
        b.broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
