#!/usr/bin/env python3
"""Chaos harness: kill -9 the unit (and sometimes the broker or a receiver) at random points.

    .venv/bin/python tools/chaos.py --trials 200 [--seed 1] [--keep DIR]

Set-up (all real, on loopback): a test CA made by ``kycedge.fleet.provision``, Mosquitto
with the repository's ``deploy/mosquitto`` config (mTLS, ACL, persistence), the carrier
receiver (``kycedge.carrier.serve.ReceiverService``, SQLite store) as two processes
sharing one subscription.

Each trial: a unit process (outbox + forwarder + paho, see ``tests/support/roles.py``)
enqueues K sealed registrations (K random in [5, 40], a few ms apart) and forwards them;
at a random moment it gets SIGKILL. In about a fifth of the trials the broker is also
SIGKILLed (half of those with its persistence database wiped) and restarted; in another
fifth a receiver process is SIGKILLed and restarted. Then the unit is restarted (it
re-enqueues any registration it had not stored yet) and the trial waits until its outbox
has drained.

Two adversities from issue 10, each drawn per trial independently of the faults above:

* ``--forge-share`` (default 0.3): forged envelopes (the unit's clear headers with random
  ciphertext) reach the carrier in bursts throughout the trial; a receiver answers each
  with a signed ``undecryptable`` for the genuine message id, sent to the unit through
  Mosquitto (see :class:`Forger`);
* ``--late-share`` (default 0.2): the unit is installed before the carrier enrols it
  (``unknown-device`` until then) and is enrolled at a random moment, before or after
  the kill.

"Accepted" = registrations whose ``put`` returned (the unit printed ``P i`` after the
durable commit). At the end, from the carrier's database:
lost = accepted registrations without exactly one stored template (or rejected);
duplicated = registrations stored more than once (by registration reference) plus
stored message ids outside the accepted set's identities counted twice.
Prints one line: ``trials=N accepted=A lost=L duplicated=D forged=F late=E`` (F trials with
forged envelopes injected, E units enrolled late).
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from kycedge.core.errors import UplinkError  # noqa: E402
from kycedge.lab.broker import Broker, Pki  # noqa: E402
from kycedge.mqtt.client import MqttClient  # noqa: E402
from kycedge.protocol import topics  # noqa: E402
from kycedge.protocol.envelope import peek_header  # noqa: E402
from kycedge.protocol.envelope.header import encode_header  # noqa: E402
from support.kyc import Carrier, message_id_for  # noqa: E402
from support.roles import spawn, write_world  # noqa: E402

TENANT = "acme"


class Reader:
    """Collects a unit process's stdout lines on a thread (so kills never block us)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.accepted: set[int] = set()
        self.drained = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("P "):
                self.accepted.add(int(line.split()[1]))
            elif line.startswith("DRAINED"):
                self.drained.set()

    def finish(self) -> set[int]:
        self.t.join(10)
        return self.accepted


def start_receiver(world: Path, instance: int, log: Path) -> subprocess.Popen[str]:
    p = spawn("receiver", world, "--instance", str(instance), log=log)
    assert p.stdout is not None
    line = p.stdout.readline().strip()
    if line != "READY":
        raise RuntimeError(f"receiver {instance} did not start: {line!r}; see {log}")
    threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()  # type: ignore[union-attr]
    return p


class Forger:
    """Forged envelopes (a genuine clear header, random ciphertext) for registrations 0..k-1 of
    a unit, in bursts until stopped, as they reach the carrier from whoever can publish on the
    unit's templates topic (a compromised broker: since the guard plugin a unit's stolen
    credentials only take over its one session): a carrier receiver (the real code, the real
    store) answers each, and its signed ``undecryptable`` goes to the unit through Mosquitto
    with the receivers' identity."""

    def __init__(self, broker: Broker, pki: Pki, carrier: Carrier, workdir: Path, device: str, k: int,
                 t0_ms: int, rng: random.Random) -> None:
        self.stop = threading.Event()
        self.sent = 0
        self.args = (broker, pki, carrier, workdir, device, k, t0_ms, random.Random(rng.random()))
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self) -> None:
        broker, pki, carrier, workdir, device, k, t0_ms, rng = self.args
        key = workdir / "device-ed25519.pem"
        while not key.exists() and not self.stop.wait(0.05):
            pass
        if self.stop.is_set():
            return
        time.sleep(0.1)  # the unit process has finished writing its key
        unit = carrier.enroll(workdir, TENANT, device, t0_ms=t0_ms, register=False)
        headers = [encode_header(peek_header(unit.seal(i).data)) for i in range(k)]
        size = len(unit.seal(0).data)
        rx = carrier.receiver()
        c = MqttClient(broker.uplink_config(pki.service()), client_id=f"carrier-receiver-forger-{device}")
        c.start()
        try:
            while not self.stop.is_set():
                if c.connected:
                    for hb in rng.sample(headers, max(1, len(headers) // 2)):
                        out = rx.handle(hb + rng.randbytes(size - len(hb)))
                        if out.receipt is None or out.device_id is None:
                            continue
                        try:
                            c.publish(topics.receipts(TENANT, out.device_id), out.receipt, timeout_s=2.0)
                            self.sent += 1
                        except UplinkError:  # the broker may be down (killed)
                            break
                self.stop.wait(rng.uniform(0.05, 0.4))
        finally:
            c.stop()
            rx.close()

    def finish(self) -> int:
        self.stop.set()
        self.t.join(10)
        return self.sent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--keep", type=Path, help="work directory to keep (default: a temp dir, removed)")
    ap.add_argument("--drain-timeout-s", type=float, default=60.0)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--outage-s", type=float, default=0.0,
                    help="first hold the broker down this long while a unit captures (and is killed once)")
    ap.add_argument("--forge-share", type=float, default=0.3,
                    help="share of trials with forged envelopes injected (undecryptable receipts)")
    ap.add_argument("--late-share", type=float, default=0.2,
                    help="share of trials whose unit is enrolled late (unknown-device until then)")
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    work = a.keep or Path(tempfile.mkdtemp(prefix="kycedge-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    log = work / "roles.log"
    pki = Pki.create(work / "pki")
    broker = Broker(work / "broker", pki, autosave_interval_s=1)
    broker.start()
    carrier = Carrier.create(work / "carrier")
    t0_ms = int(time.time() * 1000)
    world = work / "world.json"
    write_world(world, broker=broker, pki=pki, carrier_dir=carrier.dir, tenant=TENANT, t0_ms=t0_ms, run="",
                uplink={"reconnect_min_s": 1, "reconnect_max_s": 1, "keepalive_s": 5},
                outbox={"retry_initial_s": 1.0, "retry_max_s": 2.0, "retry_jitter": 0.3,
                        "inflight_window": 64},
                forwarder={"idle_poll_s": 0.05, "batch_max": 32, "error_pause_s": 0.2},
                serve={"group": "chaos", "batch_max": 64})
    receivers = {i: start_receiver(world, i, log) for i in (1, 2)}
    accepted: dict[str, set[int]] = {}
    faults = {"unit": 0, "unit-mid-enqueue": 0, "broker": 0, "broker-wiped": 0, "receiver": 0,
              "undrained": 0, "forged-trials": 0, "forged-envelopes": 0, "late-enrolled": 0}
    print(f"chaos: seed={seed} work={work}", file=sys.stderr)
    try:
        if a.outage_s > 0:
            # One long outage first: the broker is stopped for --outage-s while a unit keeps
            # capturing (one registration per second) and is killed once mid-way.
            device = "outage"
            k = max(2, int(a.outage_s))
            args = ["--device", device, "--count", str(k), "--interval-s", "1.0"]
            broker.stop()
            unit = spawn("unit", world, *args, log=log)
            r1 = Reader(unit)
            time.sleep(a.outage_s / 2)
            unit.kill()
            unit.wait()
            got = r1.finish()
            unit = spawn("unit", world, *args, log=log)
            r2 = Reader(unit)
            time.sleep(a.outage_s / 2)
            broker.start()
            t = time.monotonic()
            if not r2.drained.wait(a.drain_timeout_s + k):
                faults["undrained"] += 1
            got |= r2.finish() if r2.drained.is_set() else r2.accepted
            unit.kill()
            unit.wait()
            accepted[device] = got
            print(f"outage: broker down {a.outage_s:.0f} s, {len(got)} accepted (one per second, also "
                  f"after it came back), drained {time.monotonic() - t:.1f} s after it came back",
                  file=sys.stderr, flush=True)
        for trial in range(a.trials):
            device = f"u{trial:04d}"
            k = rng.randint(5, 40)
            forge, late = rng.random() < a.forge_share, rng.random() < a.late_share
            args = ["--device", device, "--count", str(k), "--interval-s", "0.02"]
            if late:
                args.append("--no-enroll")
                faults["late-enrolled"] += 1
            workdir = carrier.dir.parent / "units" / device
            unit = spawn("unit", world, *args, log=log)
            r1 = Reader(unit)
            forger = None
            if forge:
                faults["forged-trials"] += 1
                forger = Forger(broker, pki, carrier, workdir, device, k, t0_ms, rng)
            enrol_at = rng.choice(["first-run", "second-run"]) if late else ""
            if enrol_at == "first-run":
                threading.Timer(rng.uniform(0.3, 1.5), carrier.enroll, (workdir, TENANT, device)).start()
            roll = rng.random()
            time.sleep(rng.uniform(0.2, 1.5))  # somewhere in start-up, enqueueing or forwarding
            if roll < 0.2:
                broker.kill()
                faults["broker"] += 1
                if rng.random() < 0.5:
                    broker.wipe_persistence()
                    faults["broker-wiped"] += 1
            elif roll < 0.4:
                i = rng.choice([1, 2])
                receivers[i].kill()
                receivers[i].wait()
                faults["receiver"] += 1
            time.sleep(rng.uniform(0.0, 0.3))
            unit.kill()
            unit.wait()
            faults["unit"] += 1
            got = r1.finish()
            if 0 < len(got) < k:
                faults["unit-mid-enqueue"] += 1
            if not broker.running:
                time.sleep(rng.uniform(0.1, 0.6))
                broker.start()
            for i, p in list(receivers.items()):
                if p.poll() is not None:
                    receivers[i] = start_receiver(world, i, log)
            unit = spawn("unit", world, *args, "--exit-when-drained", log=log)
            r2 = Reader(unit)
            if enrol_at == "second-run":
                threading.Timer(rng.uniform(0.5, 3.0), carrier.enroll, (workdir, TENANT, device)).start()
            try:
                unit.wait(a.drain_timeout_s)
            except subprocess.TimeoutExpired:
                faults["undrained"] += 1
                unit.kill()
                unit.wait()
            got |= r2.finish()
            if forger is not None:
                faults["forged-envelopes"] += forger.finish()
            accepted[device] = got
            if not a.quiet:
                kind = "broker" if roll < 0.2 else "receiver" if roll < 0.4 else "unit"
                extra = (" forged" if forge else "") + (f" enrolled-late({enrol_at})" if late else "")
                print(f"trial {trial + 1}/{a.trials} {device}: k={k} accepted={len(got)} "
                      f"drained={r2.drained.is_set()} fault={kind}{extra}", file=sys.stderr, flush=True)
        time.sleep(0.5)
    finally:
        for p in receivers.values():
            p.send_signal(signal.SIGTERM)
        for p in receivers.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        broker.stop()

    db = sqlite3.connect(carrier.config.database_target)
    stored = dict(db.execute("SELECT message_id, COUNT(*) FROM templates GROUP BY message_id").fetchall())
    by_ref = dict(db.execute(
        "SELECT device_id || '/' || reference, COUNT(*) FROM templates GROUP BY device_id, reference"
    ).fetchall())
    receipts = dict(db.execute("SELECT message_id, reason FROM receipts").fetchall())
    db.close()
    total = lost = 0
    for device, ids in accepted.items():
        for i in ids:
            total += 1
            mid = str(message_id_for(TENANT, device, i, "", t0_ms))
            if stored.get(mid) != 1:
                lost += 1
                print(f"LOST {device} #{i} {mid}: stored={stored.get(mid)} receipt={receipts.get(mid)}",
                      file=sys.stderr)
    duplicated = sum(n - 1 for n in by_ref.values() if n > 1)
    print(f"chaos: faults {faults}; stored templates {len(stored)}", file=sys.stderr)
    if a.keep is None and lost == 0 and duplicated == 0:
        shutil.rmtree(work, ignore_errors=True)
    print(f"trials={a.trials} accepted={total} lost={lost} duplicated={duplicated} "
          f"forged={faults['forged-trials']} late={faults['late-enrolled']}")
    return 0 if lost == 0 and duplicated == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
