#!/usr/bin/env python3
"""What real people do, as the shipped FaceMesh sees it: blinks and turns in real live clips.

    .venv/bin/python tools/liveness_real_measures.py --clips ../shared/data/pad-video-dev
        [--synthetic-lfw ../shared/data/lfw-dev --portraits 40 --skip 40]

REAL part (``"data": "real"``): every live clip of ``--clips`` (labels.csv) through the
shipped pipeline and the liveness FaceMesh, then, per clip:

- the open-eye EAR baseline (80th percentile of the clip, as :func:`blink_events` uses);
- the EAR noise with the eyes open (the spread of EAR / baseline over frames above 0.9);
- every **dip**: a run of frames whose EAR / baseline is below ``--dip`` (0.9), with its
  depth (the lowest ratio), how long it stays below the check's 0.85 and whether the check
  (``blink_events``, the person's own baseline) counts it as a blink;
- turns: the yaw range and the fastest yaw speed (degrees per second over 0.2 s).

A dip is not necessarily a blink (looking down or laughing also narrows the eyes): the
labels say which clips show blinks; the per-clip lists let a reader check them.

SIMULATED part (``"data": "simulated"``, with ``--synthetic-lfw``): the synthetic head of
each portrait (lab/liveness_sim), rendered still then blinking once, measured the same way:
the depth of its dip. That is how the synthetic blink is validated against the real ones.
One JSON object on stdout.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
from kycedge.unit.cli.liveness import _frames
from kycedge.vision import default_models_dir
from kycedge.vision.liveness.checks import CheckConfig, blink_events
from kycedge.vision.liveness.observe import LandmarkObserver, Observation, load_observer
from kycedge.vision.pipeline import Pipeline


def observe_clip(path: Path, pipe: Pipeline, observer: LandmarkObserver,
                 fps: float = 15.0) -> list[Observation]:
    obs = []
    for t, rgb in _frames(path, fps):
        res = pipe.process_frame(rgb)
        if res.box is None or res.landmarks is None:
            continue
        o = observer.observe(rgb, t, res.faces, res.box, res.landmarks[0], res.landmarks[1])
        if o is not None:
            obs.append(o)
    return obs


def dips(obs: list[Observation], base: float, below: float, check_ratio: float) -> list[dict[str, Any]]:
    """Runs of frames with EAR / base < ``below``: start time, depth, seconds below ``check_ratio``."""
    out: list[dict[str, Any]] = []
    run: list[Observation] = []
    for o in [*obs, None]:
        if o is not None and o.ear < below * base:
            run.append(o)
            continue
        if run:
            ratios = [r.ear / base for r in run]
            under = [r.t_s for r in run if r.ear < check_ratio * base]
            dt = (1.0 / 15.0)
            out.append({"t_s": round(run[0].t_s, 2), "depth": round(min(ratios), 3),
                        "frames": len(run),
                        "below_check_s": round((under[-1] - under[0] + dt) if under else 0.0, 2)})
            run = []
    return out


def yaw_speed(obs: list[Observation], span_s: float = 0.2) -> float:
    best = 0.0
    j = 0
    for i in range(len(obs)):
        while j < len(obs) and obs[j].t_s - obs[i].t_s < span_s:
            j += 1
        if j < len(obs):
            dt = obs[j].t_s - obs[i].t_s
            if dt <= 2 * span_s:
                best = max(best, abs(obs[j].yaw_deg - obs[i].yaw_deg) / dt)
    return best


def blinks_rule_before(obs: list[Observation], base: float, ratio: float = 0.85, max_s: float = 0.7) -> int:
    """Blinks by the challenge's rule before BlinkRule (for comparison): closed below ``ratio``
    x base, reopened when back at (0.5 ratio + 0.5) x base within ``max_s``."""
    n, closed_at = 0, None
    for o in obs:
        if closed_at is None:
            if o.ear < ratio * base:
                closed_at = o.t_s
        elif o.ear >= (0.5 * ratio + 0.5) * base:
            n, closed_at = n + 1, None
        elif o.t_s - closed_at > max_s:
            closed_at = None
    return n


def measure(obs: list[Observation], below: float, cfg: CheckConfig) -> dict[str, Any]:
    if len(obs) < 3:
        return {"frames": len(obs)}
    ears = np.array([o.ear for o in obs])
    base = float(np.percentile(ears, 80))
    ratio = ears / base
    open_r = ratio[ratio >= 0.9]
    yaws = [o.yaw_deg for o in obs]
    return {"frames": len(obs), "ear_baseline": round(base, 4),
            "open_noise_sd": round(float(np.std(open_r)), 4) if len(open_r) > 2 else None,
            "dips": dips(obs, base, below, cfg.blink_ratio),
            "check_blinks": len(blink_events(obs, cfg)),
            "blinks_rule_before": blinks_rule_before(obs, base, cfg.blink_ratio, cfg.blink_max_s),
            "yaw_range_deg": round(max(yaws) - min(yaws), 1),
            "yaw_speed_max_deg_s": round(yaw_speed(obs), 1)}


def _blinks_labelled(row: dict[str, str]) -> bool:
    return "blink" in row["actions"] or "eyes" in row["actions"]


def real(clips: Path, pipe: Pipeline, observer: LandmarkObserver, below: float,
         cfg: CheckConfig, only_blinks: bool = False) -> dict[str, Any]:
    rows = [r for r in csv.DictReader((clips / "labels.csv").open()) if r["label"] == "live"
            and (not only_blinks or _blinks_labelled(r))]
    per = []
    for r in rows:
        m = measure(observe_clip(clips / r["path"], pipe, observer), below, cfg)
        per.append({"path": r["path"], "blinks_labelled": _blinks_labelled(r),
                    "actions": r["actions"], **m})
    deep = [d["depth"] for p in per if p["blinks_labelled"] for d in p.get("dips", [])]
    return {"data": "real", "live_clips": len(per),
            "dip_depths_in_clips_labelled_with_blinks": sorted(deep),
            "labelled_clips_with_a_blink": {
                "rule": sum(p.get("check_blinks", 0) > 0 for p in per if p["blinks_labelled"]),
                "rule_before": sum(p.get("blinks_rule_before", 0) > 0 for p in per if p["blinks_labelled"]),
                "of": sum(p["blinks_labelled"] for p in per)},
            "open_noise_sd_median": statistics.median(
                p["open_noise_sd"] for p in per if p.get("open_noise_sd")),
            "per_clip": per}


def synthetic(lfw: Path, skip: int, n: int, pipe: Pipeline, observer: LandmarkObserver) -> dict[str, Any]:
    from kycedge.lab.liveness_sim.build import portrait_mesh, subject
    from kycedge.lab.liveness_sim.drive import observe
    from kycedge.lab.liveness_sim.performer import action_pose
    from kycedge.lab.liveness_sim.scene import camera
    from kycedge.vision.decode import decode_image

    root = lfw / "images" if (lfw / "images").is_dir() else lfw
    people = sorted(p for p in root.iterdir() if p.is_dir())[skip:skip + n]
    depths, per = [], []
    for k, d in enumerate(people):
        imgs = sorted(d.glob("*.jpg"))
        pm = portrait_mesh(pipe, observer, decode_image(imgs[0].read_bytes())) if imgs else None
        if pm is None:
            continue
        rng = np.random.default_rng(k)
        perf = subject(pm[0], pm[1], rng)
        ears = []
        for i in range(24):  # 0.4 s open, then one blink (the performer's own blink timing)
            t = i / 15.0
            pose = perf.base if t < 0.4 else action_pose("liveness-blink", t - 0.4, perf.base, 1.0)
            _, o, _ = observe(pipe, observer, camera(perf.render(pose), rng), t)
            ears.append(o.ear if o is not None else float("nan"))
        e = np.array(ears)
        if np.isnan(e[:6]).all() or np.isnan(e[6:]).all():
            per.append({"portrait": d.name, "depth": None})  # FaceMesh lost the face
            continue
        base = float(np.nanmedian(e[:6]))
        depth = float(np.nanmin(e[6:]) / base)
        depths.append(depth)
        per.append({"portrait": d.name, "depth": round(depth, 3)})
    return {"data": "simulated", "portraits": len(per), "measured": len(depths),
            "dip_depth": {"median": round(statistics.median(depths), 3) if depths else None,
                          "min": round(min(depths), 3) if depths else None,
                          "max": round(max(depths), 3) if depths else None,
                          "p10": round(float(np.percentile(depths, 10)), 3) if depths else None,
                          "p90": round(float(np.percentile(depths, 90)), 3) if depths else None},
            "per_portrait": per}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=Path, default=None)
    ap.add_argument("--synthetic-lfw", type=Path, default=None)
    ap.add_argument("--portraits", type=int, default=40)
    ap.add_argument("--skip", type=int, default=40)
    ap.add_argument("--dip", type=float, default=0.9,
                    help="EAR / baseline below which a run of frames is a dip")
    ap.add_argument("--models", type=Path, default=None)
    ap.add_argument("--blink-clips", action="store_true", help="only the live clips labelled with blinks")
    args = ap.parse_args(argv)
    pipe = Pipeline.load(args.models or default_models_dir(), threads=1)
    observer = load_observer(pipe.manifest, threads=1)
    out: dict[str, Any] = {"tool": "liveness_real_measures"}
    if args.clips is not None:
        out["real"] = real(args.clips, pipe, observer, args.dip, CheckConfig(), args.blink_clips)
    if args.synthetic_lfw is not None:
        out["synthetic"] = synthetic(args.synthetic_lfw, args.skip, args.portraits, pipe, observer)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
