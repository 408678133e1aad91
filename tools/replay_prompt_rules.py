#!/usr/bin/env python3
"""Replay pass rates of prompt rules, on the same recorded sessions.

    .venv/bin/python tools/replay_prompt_rules.py --lfw ../shared/data/lfw-dev --skip 400 \
        --portraits 100 --seed 7 --draws 100

SIMULATED (``"data": "simulated"``): per portrait (the first image of each LFW identity in
name order after ``--skip``), the synthetic head (lab/liveness_sim) follows one fresh
challenge and its frames are recorded (RAM); the recording is analysed once and replayed
against ``--draws`` fresh challenges under each rule, every rule from the same seeded draw
stream and over the same recordings, so the rules differ only in what they let the
challenge ask. Rules: ``shipped`` (a blink never first) and ``blink_first`` (the rule
before: a blink may be the first prompt). Each portrait's session is recorded twice, once
under each rule (the recorded person answered that rule's challenge), so the figures are
per (recording rule, challenge rule): ``blink_first`` / ``blink_first`` is the world
before, ``shipped`` / ``shipped`` the world now. Figures: replays passed / challenges,
over all recordings and over the complete ones (the recorded session passed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
from kycedge.lab.liveness_sim.build import lfw_portraits, portrait_mesh, subject
from kycedge.lab.liveness_sim.drive import decide, replay_frames, run_attempt
from kycedge.lab.liveness_sim.performer import PerformerSource
from kycedge.vision import default_models_dir
from kycedge.vision.decode import decode_image
from kycedge.vision.liveness.challenge import ChallengeConfig
from kycedge.vision.liveness.observe import load_observer
from kycedge.vision.pipeline import Pipeline

RULES = {"shipped": ChallengeConfig(),
         "blink_first": dataclasses.replace(ChallengeConfig(), blink_first=True)}


def rates(rows: list[dict[str, Any]], draws: int) -> dict[str, Any]:
    """Per challenge rule over ``rows`` (one row per recording: its decision and passes per rule)."""
    out: dict[str, Any] = {}
    for rule in RULES:
        for name, keep in (("all_recordings", rows), ("complete_recordings",
                                                      [r for r in rows if r["recording"] == "passed"])):
            passed = sum(r[rule] for r in keep)
            n = len(keep) * draws
            out.setdefault(rule, {})[name] = {"recordings": len(keep), "challenges": n, "passed": passed,
                                              "rate": round(passed / n, 5) if n else None}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lfw", type=Path, default=Path("../shared/data/lfw-dev"))
    ap.add_argument("--skip", type=int, default=400)
    ap.add_argument("--portraits", type=int, default=100)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--draws", type=int, default=100)
    ap.add_argument("--max-s", type=float, default=20.0)
    ap.add_argument("--models", type=Path, default=None)
    args = ap.parse_args(argv)
    pipe = Pipeline.load(args.models or default_models_dir(), threads=1)
    observer = load_observer(pipe.manifest, threads=1)
    rows: list[dict[str, Any]] = []
    for k, path in enumerate(lfw_portraits(args.lfw, args.skip, args.portraits)):
        seed = args.seed * 1_000_003 + k
        pm = portrait_mesh(pipe, observer, decode_image(path.read_bytes()))
        if pm is None:
            continue
        for rec_rule, rec_cfg in RULES.items():
            recorded: list[Any] = []
            perf = subject(pm[0], pm[1], np.random.default_rng(seed))
            o = run_attempt(PerformerSource(perf, record=recorded), pipe, observer, rec_cfg,
                            perf.on_prompt, rng=random.Random(seed), max_s=args.max_s)
            frames = replay_frames(recorded, pipe, observer, args.max_s)
            del recorded
            row: dict[str, Any] = {"portrait": path.parent.name, "recorded_under": rec_rule,
                                   "recording": o.decision}
            for rule, cfg in RULES.items():
                prng = random.Random(seed + 99)
                row[rule] = sum(decide(iter(frames), pipe.threshold, cfg, None, rng=prng,
                                       max_s=args.max_s).decision == "passed" for _ in range(args.draws))
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    json.dump({"tool": "replay_prompt_rules", "data": "simulated", "draws": args.draws,
               "recorded_under": {rule: rates([r for r in rows if r["recorded_under"] == rule], args.draws)
                                  for rule in RULES},
               "recordings": rows}, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
