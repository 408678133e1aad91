#!/usr/bin/env python3
"""The session's tracking rules on real clips: second faces, gaps, box jumps.

    .venv/bin/python tools/liveness_tracking_measures.py --clips ../shared/data/pad-video-dev [--label live]

REAL data (``"data": "real"``): every clip of ``--clips`` (labels.csv; ``--label`` keeps one
label) through the shipped pipeline and the liveness FaceMesh, frame by frame, counting:

- ``raw_second_box``: frames where the session's detector (BlazeFace) returns more than one
  box; ``second_face``: frames where the pipeline counts more than one *distinct* face
  (:func:`kycedge.vision.detect.distinct_faces`: a box overlapping the tracked face's box is
  that face), which is what the session's one-face rule sees;
- ``yunet_raw_second_box`` / ``yunet_second_face``: the same for the second detector (YuNet),
  whose count the clip judge's ``multiple_faces`` rule uses (here on every frame with a face,
  not only the judge's sampled ones);
- ``no_face``: frames without a face box; ``no_mesh``: frames with the box but no FaceMesh
  mesh; the longest gap in seconds counted over frames with a mesh (``gap_mesh_s``, the rule
  before ``observe.Seen``) and over frames with the face's box (``gap_box_s``, the rule now;
  the challenge's limit is ``max_gap_s``);
- ``jump_widths``: the largest move of the box centre between consecutive frames with the
  face, in box widths (the challenge's limit is ``max_jump``);
- identity continuity: each later template (frames whose gates pass) against the clip's first
  one, as the attempt compares challenge frames with its frontal reference (any one below the
  match threshold fails it): ``templates``, ``identity_min``, ``below_match`` and its longest
  run ``run_below_match``; the same over the templates the attempt compares
  (``*_near_frontal``: FaceMesh's yaw within ``frontal_deg`` of the first template's, a
  frame without a mesh where the last mesh was). Templates stay in RAM; only cosines are
  printed.

One JSON object on stdout: per clip and the totals per label.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

from kycedge.protocol.match import cosine
from kycedge.unit.cli.liveness import _frames
from kycedge.vision import default_models_dir
from kycedge.vision.decode import FrameImage
from kycedge.vision.detect import Box, distinct_faces
from kycedge.vision.liveness.attempt import near_frontal
from kycedge.vision.liveness.challenge import ChallengeConfig
from kycedge.vision.liveness.observe import LandmarkObserver, load_observer
from kycedge.vision.pipeline import Pipeline


def measure_clip(path: Path, pipe: Pipeline, observer: LandmarkObserver, fps: float) -> dict[str, Any]:
    n = raw = second = y_raw = y_second = no_face = no_mesh = 0
    gap_mesh = gap_box = jump = 0.0
    last_mesh_t: float | None = None
    last_box_t: float | None = None
    last_box: Box | None = None
    ref: Any = None
    ref_yaw: float | None = None
    last_yaw: float | None = None
    scores: list[float] = []
    near: list[bool] = []
    frontal_deg = ChallengeConfig().frontal_deg
    for t, rgb in _frames(path, fps):
        n += 1
        frame = FrameImage(rgb)
        raw += len(pipe.detector.detect(frame)) > 1
        res = pipe.process_frame(rgb)
        if res.box is None or res.landmarks is None:
            no_face += 1
            continue
        second += res.faces > 1
        if pipe.fallback is not None:
            boxes = [f.box for f in pipe.fallback.detect(frame)]
            y_raw += len(boxes) > 1
            y_second += distinct_faces(boxes, res.box) > 1
        if last_box is not None and last_box_t is not None:
            w = max(last_box[2] - last_box[0], 1e-6)
            jump = max(jump, math.hypot(0.5 * (res.box[0] + res.box[2] - last_box[0] - last_box[2]),
                                        0.5 * (res.box[1] + res.box[3] - last_box[1] - last_box[3])) / w)
            gap_box = max(gap_box, t - last_box_t)
        last_box, last_box_t = res.box, t
        obs = observer.observe(rgb, t, res.faces, res.box, res.landmarks[0], res.landmarks[1])
        if obs is not None:
            last_yaw = obs.yaw_deg
        if res.ok and res.template is not None:
            if ref is None:
                ref, ref_yaw = res.template, last_yaw
            else:
                scores.append(float(cosine(ref, res.template)))
                # the attempt compares a template only near frontal (here: to the first
                # template's yaw, the clip has no hold-still)
                near.append(near_frontal(last_yaw, ref_yaw, frontal_deg))
        if obs is None:
            no_mesh += 1
            continue
        if last_mesh_t is not None:
            gap_mesh = max(gap_mesh, t - last_mesh_t)
        last_mesh_t = t
    del ref
    return {"frames": n, "raw_second_box": raw, "second_face": second, "yunet_raw_second_box": y_raw,
            "yunet_second_face": y_second, "no_face": no_face, "no_mesh": no_mesh,
            "gap_mesh_s": round(gap_mesh, 3), "gap_box_s": round(gap_box, 3), "jump_widths": round(jump, 3),
            **identity_runs(scores, pipe.threshold),
            **{f"{k}_near_frontal": v for k, v in identity_runs(
                [x for x, keep in zip(scores, near, strict=True) if keep], pipe.threshold).items()}}


def identity_runs(scores: list[float], threshold: float) -> dict[str, Any]:
    """The continuity figures of one clip's template cosines (see the module docstring)."""
    best = run = 0
    for s in scores:
        run = run + 1 if s < threshold else 0
        best = max(best, run)
    return {"templates": len(scores), "identity_min": round(min(scores), 3) if scores else None,
            "below_match": sum(s < threshold for s in scores), "run_below_match": best}


def summarise(clips: dict[str, dict[str, Any]], labels: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label in sorted(set(labels.values())):
        rows = [m for p, m in clips.items() if labels[p] == label]
        tot: dict[str, Any] = {"clips": len(rows)}
        for key in ("frames", "raw_second_box", "second_face", "yunet_raw_second_box", "yunet_second_face",
                    "no_face", "no_mesh", "templates", "below_match", "templates_near_frontal",
                    "below_match_near_frontal"):
            tot[key] = sum(int(m[key]) for m in rows)
        for key in ("gap_mesh_s", "gap_box_s", "jump_widths", "run_below_match"):
            tot[f"max_{key}"] = max((float(m[key]) for m in rows), default=0.0)
        tot["clips_with_second_face"] = sum(1 for m in rows if m["second_face"] > 0)
        tot["clips_below_match"] = sum(1 for m in rows if m["below_match"] > 0)
        tot["clips_below_match_near_frontal"] = sum(1 for m in rows if m["below_match_near_frontal"] > 0)
        out[label] = tot
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=Path, required=True, help="pad-video-dev (labels.csv)")
    ap.add_argument("--label", default=None, help="only clips with this label (live, attack)")
    ap.add_argument("--models", type=Path, default=None)
    args = ap.parse_args(argv)
    pipe = Pipeline.load(args.models or default_models_dir(), threads=1)
    observer = load_observer(pipe.manifest, threads=1)
    with (args.clips / "labels.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if args.label is None or r["label"] == args.label]
    clips: dict[str, dict[str, Any]] = {}
    labels: dict[str, str] = {}
    for r in rows:
        clips[r["path"]] = measure_clip(args.clips / r["path"], pipe, observer, float(r["fps"] or 15))
        labels[r["path"]] = r["label"]
    cfg = ChallengeConfig()
    json.dump({"tool": "liveness_tracking_measures", "data": "real",
               "rules": {"max_gap_s": cfg.max_gap_s, "max_jump": cfg.max_jump,
                         "match_threshold": pipe.threshold},
               "totals": summarise(clips, labels), "clips": clips}, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
