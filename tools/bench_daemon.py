#!/usr/bin/env python3
"""Daemon start-up and memory: time to READY=1 and peak RSS of the running daemon.

Runs the real daemon (``kycedge run``, a subprocess, as systemd would) on a replay camera
over the fixture faces, with a real Mosquitto (mutual TLS) and the carrier receiver, all
set up by ``kycedge.lab.harness.Lab`` in a temporary directory:

1. starts and stops the daemon ``--starts`` times; READY=1 is taken from the daemon's own
   sd_notify datagram (``$NOTIFY_SOCKET`` points at the lab), measured from the spawn;
2. on the last start, runs ``--sessions`` registrations through the local API (each to
   its signed receipt) and reads the daemon's peak RSS (``VmHWM`` in /proc/PID/status).

Floors (issue 5): READY within 3 s, peak RSS within 150 MB.

    .venv/bin/python tools/bench_daemon.py [--starts 5] [--sessions 20] [--models DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from kycedge.core.paths import data_dir
from kycedge.lab.harness import Lab
from kycedge.vision import default_models_dir


def proc_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--starts", type=int, default=5)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--models", type=Path, default=None)
    ap.add_argument("--jpeg", action="store_true",
                    help="replay the JPEG files (decoded in the daemon) instead of raw camera-size frames")
    args = ap.parse_args()
    faces = data_dir("faces")
    models = (args.models or default_models_dir()).resolve()
    lab = Lab.create(session_timeout_s=20.0, receipt_wait_s=30.0, selftest_image=faces / "obama.jpg",
                     settle_s=0.0, best_of=1, raw_frames=not args.jpeg)
    try:
        lab.provision(models, {"bench-ref-genuine-0001": faces / "obama.jpg"})
        lab.start_broker()
        lab.start_receiver()
        lab.show(faces / "obama2.jpg")
        ready: list[float] = []
        for i in range(args.starts):
            ready.append(lab.start_daemon())
            if i < args.starts - 1:
                lab.stop_daemon()
        assert lab.daemon is not None
        pid = lab.daemon.pid
        rss_ready = proc_kb(pid, "VmRSS")
        c = lab.client()
        t0 = time.monotonic()
        outcomes: dict[str, int] = {}
        for _ in range(args.sessions):
            sid = c.start_session("bench-ref-genuine-0001", consent_version=c.consent_version())["session"]
            last = None
            for ev in c.events(sid):
                last = ev
            key = f"{last['event']}:{last.get('reason')}" if last else "none"
            outcomes[key] = outcomes.get(key, 0) + 1
        per_session = (time.monotonic() - t0) / max(args.sessions, 1)
        hwm, rss = proc_kb(pid, "VmHWM"), proc_kb(pid, "VmRSS")
        code, stop_s = lab.stop_daemon()
    finally:
        lab.close()
    report = {
        "ready_s": {"median": round(statistics.median(ready), 3), "max": round(max(ready), 3),
                    "all": [round(x, 3) for x in ready]},
        "rss_mb": {"at_ready": round(rss_ready / 1024, 1), "after_sessions": round(rss / 1024, 1),
                   "peak": round(hwm / 1024, 1)},
        "sessions": args.sessions, "outcomes": outcomes, "s_per_session_to_receipt": round(per_session, 3),
        "stop": {"exit_code": code, "seconds": round(stop_s, 3)},
        "floors": {"ready_s<=3": max(ready) <= 3.0, "peak_rss_mb<=150": hwm / 1024 <= 150},
    }
    print(json.dumps(report, indent=2))
    print(f"READY=1 after {statistics.median(ready):.2f} s median ({max(ready):.2f} s max, "
          f"{args.starts} starts); peak RSS {hwm / 1024:.1f} MB after {args.sessions} registrations")
    return 0 if all(report["floors"].values()) else 1  # type: ignore[union-attr]


if __name__ == "__main__":
    sys.exit(main())
