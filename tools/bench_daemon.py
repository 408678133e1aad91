#!/usr/bin/env python3
"""Daemon start-up and memory: time to READY=1 and peak RSS of the running daemon.

Runs the real daemon (``kycedge run``, a subprocess, as systemd would) on a replay camera
over the fixture faces, with a real Mosquitto (mutual TLS) and the carrier receiver, all
set up by ``kycedge.lab.harness.Lab`` in a temporary directory:

1. starts and stops the daemon ``--starts`` times; READY=1 is taken from the daemon's own
   sd_notify datagram (``$NOTIFY_SOCKET`` points at the lab), measured from the spawn;
2. on the last start, runs ``--sessions`` registrations through the local API (each to
   its signed receipt) and reads the daemon's peak RSS (``VmHWM`` in /proc/PID/status).

Floors (issue 5): READY within 3 s, peak RSS within 150 MB (issue 12: with liveness on).

``--liveness`` turns the unit's challenge on (``[liveness] enabled = true``, the carrier
under ``required``) and the camera replays a SIMULATED bona fide session recorded here first
(kycedge.lab.liveness_sim: the synthetic head of ``obama2.jpg`` answering a challenge,
rendered at 400 x 300 and scaled to 800 x 600 inside a 1280 x 720 frame). A recording cannot
answer the daemon's fresh prompts, so these sessions end ``failed/liveness-failed`` after
the challenge (and its retry) has run on every frame: the figure is the memory of the full
liveness path, not of a passed one.

    .venv/bin/python tools/bench_daemon.py [--starts 5] [--sessions 20] [--models DIR] [--liveness]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
from kycedge.core.paths import data_dir
from kycedge.lab.harness import Lab
from kycedge.vision import default_models_dir


def proc_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def recorded_session(models: Path, photo: Path, seed: int = 7) -> tuple[list[np.ndarray], str]:
    """Frames of a simulated bona fide session (camera size 1280 x 720) and its outcome."""
    from kycedge.lab.liveness_sim.build import portrait_mesh, subject
    from kycedge.lab.liveness_sim.drive import run_attempt
    from kycedge.lab.liveness_sim.performer import PerformerSource
    from kycedge.vision.decode import decode_image
    from kycedge.vision.liveness.challenge import ChallengeConfig
    from kycedge.vision.liveness.observe import load_observer
    from kycedge.vision.pipeline import Pipeline

    pipe = Pipeline.load(models, threads=1)
    observer = load_observer(pipe.manifest, shared=pipe.mesh)
    pm = portrait_mesh(pipe, observer, decode_image(photo.read_bytes()))
    if pm is None:
        raise SystemExit(f"{photo}: no face for the synthetic subject")
    person = subject(*pm, np.random.default_rng(seed))
    frames: list[np.ndarray] = []
    out = run_attempt(PerformerSource(person, record=frames), pipe, observer, ChallengeConfig(),
                      person.on_prompt)
    big = [np.pad(f.repeat(2, axis=0).repeat(2, axis=1), ((60, 60), (240, 240), (0, 0)), mode="edge")
           for f in frames]
    return big, f"{out.decision}/{out.reason} after {out.decided_at_s} s, {len(frames)} frames"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--starts", type=int, default=5)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--models", type=Path, default=None)
    ap.add_argument("--liveness", action="store_true",
                    help="the challenge on; the camera replays a simulated session (see above)")
    ap.add_argument("--clip", action="store_true",
                    help="the camera streams the simulated session's clip also without --liveness "
                         "(the like-for-like comparison)")
    ap.add_argument("--photo", action="store_true",
                    help="with --liveness: the camera shows one still photo (the challenge then fails "
                         "for want of a response; isolates the streamed camera's cost)")
    ap.add_argument("--daemon-env", action="append", default=[], metavar="NAME=VALUE",
                    help="an environment variable for the daemon (e.g. glibc MALLOC_* tunables)")
    ap.add_argument("--jpeg", action="store_true",
                    help="replay the JPEG files (decoded in the daemon) instead of raw camera-size frames")
    args = ap.parse_args()
    faces = data_dir("faces")
    models = (args.models or default_models_dir()).resolve()
    clip: list[np.ndarray] = []
    recorded = ""
    streamed = args.clip or (args.liveness and not args.photo)
    if streamed:
        clip, recorded = recorded_session(models, faces / "obama2.jpg")
    lab = Lab.create(session_timeout_s=60.0 if args.liveness else 20.0, receipt_wait_s=30.0,
                     selftest_image=faces / "obama.jpg", settle_s=0.0, best_of=1, raw_frames=not args.jpeg,
                     liveness=args.liveness,
                     daemon_env=dict(kv.split("=", 1) for kv in args.daemon_env))
    try:
        lab.provision(models, {"bench-ref-genuine-0001": faces / "obama.jpg"})
        lab.start_broker()
        lab.start_receiver()
        config = None
        if streamed:
            lab.show_clip("recorded-session", clip)
            del clip
            # the camera streams the clip (replay_path = the .y4m file), as a camera delivers
            # frames; a directory would make the replay source hold every frame in RAM
            clip_path = lab.scene / "recorded-session.y4m"
            config = lab.root / "unit-liveness.toml"
            text = lab.config_path.read_text()
            config.write_text(text.replace(f'replay_path = "{lab.scene}"', f'replay_path = "{clip_path}"'))
        else:
            lab.show(faces / "obama2.jpg")
        ready: list[float] = []
        for i in range(args.starts):
            ready.append(lab.start_daemon(config=config))
            if i < args.starts - 1:
                lab.stop_daemon()
        assert lab.daemon is not None
        pid = lab.daemon.pid
        rss_ready = proc_kb(pid, "VmRSS")
        c = lab.client()
        t0 = time.monotonic()
        outcomes: dict[str, int] = {}
        samples: list[tuple[float, int]] = []  # (s since the first session, VmRSS kB) every 20 ms
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.02):
                try:
                    samples.append((time.monotonic() - t0, proc_kb(pid, "VmRSS")))
                except (OSError, KeyError):
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        ends: list[float] = []
        end_s: list[float] = []
        for _ in range(args.sessions):
            sid = c.start_session("bench-ref-genuine-0001", consent_version=c.consent_version())["session"]
            last = None
            for ev in c.events(sid):
                last = ev
            key = f"{last['event']}:{last.get('reason')}" if last else "none"
            outcomes[key] = outcomes.get(key, 0) + 1
            ends.append(round(proc_kb(pid, "VmRSS") / 1024, 1))
            end_s.append(time.monotonic() - t0)
        per_session = (time.monotonic() - t0) / max(args.sessions, 1)
        hwm, rss = proc_kb(pid, "VmHWM"), proc_kb(pid, "VmRSS")
        done.set()
        sampler.join()
        top = max(samples, key=lambda x: x[1]) if samples else (0.0, 0)
        bounds = [0.0, *end_s]
        session_max = [round(max((kb for t, kb in samples if lo <= t < hi), default=0) / 1024, 1)
                       for lo, hi in itertools.pairwise(bounds)]
        code, stop_s = lab.stop_daemon()
    finally:
        lab.close()
    report = {
        "ready_s": {"median": round(statistics.median(ready), 3), "max": round(max(ready), 3),
                    "all": [round(x, 3) for x in ready]},
        "rss_mb": {"at_ready": round(rss_ready / 1024, 1), "after_sessions": round(rss / 1024, 1),
                   "peak": round(hwm / 1024, 1),
                   "sampled_max": {"mb": round(top[1] / 1024, 1), "at_s": round(top[0], 2)},
                   "after_each_session": ends, "max_in_each_session": session_max},
        "liveness": {"enabled": args.liveness}, "daemon_env": args.daemon_env,
        "camera": f"streams a simulated session ({recorded})" if streamed else "replays one photo",
        "load_avg_1m": round(os.getloadavg()[0], 2),
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
