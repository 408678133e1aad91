#!/usr/bin/env python3
"""A day of use compressed into a loop: thousands of registrations with the broker flapping.

The real daemon (``kycedge run`` subprocess, replay camera over the fixture faces, real
models), a real Mosquitto (mutual TLS) and the carrier receiver run in a temporary lab
(``kycedge.lab.harness``). The loop drives the local API the way an agent's app would,
with a mix per cycle of 20: genuine customers (obama2 vs the obama ID photo), impostors
(biden), a cancelled session, a refused second concurrent session, and a bad capture
(empty scene, 1 s limit). Meanwhile a thread stops the broker for ``--down-s`` every
``--flap-s`` seconds (sessions keep being queued; receipts arrive after reconnect).

It prints the daemon's RSS and open file descriptors at READY, after a warm-up, every
``--every`` sessions and at the end; then waits for the outbox to drain and checks that
every queued registration got its signed receipt (lost = 0).

    .venv/bin/python tools/soak.py [--sessions 2000] [--flap-s 20] [--down-s 4] [--models DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from kycedge.core.paths import data_dir
from kycedge.lab.harness import Lab
from kycedge.unit.client import ApiClientError
from kycedge.vision import default_models_dir

REF = "soak-ref-customer-{:06d}"


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def rss_fds(pid: int) -> tuple[float, int]:
    return status_kb(pid, "VmRSS") / 1024, len(os.listdir(f"/proc/{pid}/fd"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--every", type=int, default=250)
    ap.add_argument("--flap-s", type=float, default=20.0, help="broker up this long between outages")
    ap.add_argument("--down-s", type=float, default=4.0, help="each broker outage")
    ap.add_argument("--models", type=Path, default=None)
    ap.add_argument("--jpeg", action="store_true",
                    help="replay the JPEG files (decoded in the daemon) instead of raw camera-size frames")
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE for the daemon's environment")
    args = ap.parse_args()
    faces = data_dir("faces")
    models = (args.models or default_models_dir()).resolve()
    lab = Lab.create(session_timeout_s=10.0, receipt_wait_s=1.0, settle_s=0.0, best_of=1,
                     selftest_image=faces / "obama.jpg", raw_frames=not args.jpeg,
                     daemon_env=dict(kv.split("=", 1) for kv in args.env))
    stop = threading.Event()
    flaps = [0]
    samples: list[dict[str, Any]] = []
    peak_mb = 0.0
    counts: dict[str, int] = {}
    queued: list[str] = []
    t_start = time.monotonic()
    try:
        refs = {REF.format(i): faces / "obama.jpg" for i in range(20)}
        lab.provision(models, refs)
        lab.start_broker()
        lab.start_receiver()
        lab.show(faces / "obama2.jpg")
        ready = lab.start_daemon()
        assert lab.daemon is not None
        pid = lab.daemon.pid
        c = lab.client()
        rss, fds = rss_fds(pid)
        samples.append({"at": "ready", "sessions": 0, "rss_mb": round(rss, 1), "fds": fds})
        print(f"READY=1 after {ready:.2f} s; rss {rss:.1f} MB, fds {fds}", flush=True)

        def flapper() -> None:
            while not stop.wait(args.flap_s):
                lab.stop_broker()
                flaps[0] += 1
                stop.wait(args.down_s)
                lab.start_broker()

        threading.Thread(target=flapper, name="flapper", daemon=True).start()
        scene = "obama2"
        consent = c.consent_version()
        for i in range(args.sessions):
            kind = ("impostor" if i % 20 == 5 else "cancel" if i % 20 == 10 else "busy" if i % 20 == 15
                    else "bad" if i % 20 == 19 else "genuine")
            want = {"impostor": "biden", "bad": "empty"}.get(kind, "obama2")
            if want != scene:
                lab.show(empty=True) if want == "empty" else lab.show(faces / f"{want}.jpg")
                scene = want
            ref = REF.format(i % 20)
            try:
                sid = c.start_session(ref, timeout_s=1.0 if kind == "bad" else None,
                                      consent_version=consent)["session"]
                if kind == "cancel":
                    try:
                        c.cancel(sid)
                    except ApiClientError as e:  # it may already have queued
                        counts[f"cancel-late:{e.code}"] = counts.get(f"cancel-late:{e.code}", 0) + 1
                if kind == "busy":
                    try:
                        c.start_session(REF.format((i + 1) % 20), consent_version=consent)
                        counts["busy-not-refused"] = counts.get("busy-not-refused", 0) + 1
                    except ApiClientError as e:
                        counts[f"second:{e.code}"] = counts.get(f"second:{e.code}", 0) + 1
                last: dict[str, Any] = {}
                for ev in c.events(sid):
                    last = ev
                    if ev["event"] == "queued":
                        queued.append(ev["message_id"])
                key = f"{last.get('event')}:{last.get('reason', last.get('status', ''))}"
            except ApiClientError as e:
                key = f"api-error:{e.code}"
            counts[key] = counts.get(key, 0) + 1
            n = i + 1
            if n == args.warmup or n % args.every == 0 or n == args.sessions:
                rss, fds = rss_fds(pid)
                samples.append({"at": "warm" if n == args.warmup else "run", "sessions": n,
                                "rss_mb": round(rss, 1), "fds": fds,
                                "elapsed_s": round(time.monotonic() - t_start, 1),
                                "broker_outages": flaps[0]})
                print(f"  {n:>6} sessions  rss {rss:6.1f} MB  fds {fds:3d}  outages {flaps[0]:3d}  "
                      f"{time.monotonic() - t_start:7.1f} s", flush=True)
        stop.set()
        time.sleep(args.down_s + 0.5)
        if not lab.broker_running:
            lab.start_broker()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and c.info()["queue"]["count"] > 0:
            time.sleep(0.5)
        lost = [m for m in queued if c.message(m).get("state") != "receipted"]
        rss, fds = rss_fds(pid)
        peak_mb = round(status_kb(pid, "VmHWM") / 1024, 1)
        samples.append({"at": "drained", "sessions": args.sessions, "rss_mb": round(rss, 1), "fds": fds})
        code, stop_s = lab.stop_daemon()
    finally:
        stop.set()
        lab.close()
    warm = next(s for s in samples if s["at"] in ("warm", "run"))
    end = samples[-1]
    report = {
        "sessions": args.sessions, "broker_outages": flaps[0], "outcomes": dict(sorted(counts.items())),
        "queued": len(queued), "receipted": len(queued) - len(lost), "lost": len(lost),
        "rss_mb": {"ready": samples[0]["rss_mb"], "after_warmup": warm["rss_mb"], "end": end["rss_mb"],
                   "growth_after_warmup": round(end["rss_mb"] - warm["rss_mb"], 1), "peak": peak_mb,
                   "min_after_warmup": min(s["rss_mb"] for s in samples[1:]),
                   "max_after_warmup": max(s["rss_mb"] for s in samples[1:])},
        "fds": {"ready": samples[0]["fds"], "after_warmup": warm["fds"], "end": end["fds"]},
        "samples": samples, "stop": {"exit_code": code, "seconds": round(stop_s, 2)},
        "elapsed_s": round(time.monotonic() - t_start, 1),
    }
    print(json.dumps(report, indent=2))
    return 0 if not lost and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
