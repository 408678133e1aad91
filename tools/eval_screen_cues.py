"""Passive screen cues on real stills: per-cue separation (AUC, APCER, BPCER) as one JSON summary.

Reads ``labels.csv`` of pad-stills-dev (180 live, 150 screen-replay stills from 6 sources,
mostly tight face crops of webcam frames: **crops, not whole frames**, so bezel and
background cues cannot be measured here), computes every cue of
:mod:`kycedge.vision.liveness.screen` on each still and prints, per cue:

- ``auc``: the probability that an attack still scores more screen-like than a live one
  (pooled; 0.5 is chance), and ``auc_within_source``: the same within each source that has
  both labels, averaged (sources differ in camera and light, so a pooled AUC can measure
  the source rather than the screen);
- the threshold at which the live stills' BPCER is ``--bpcer`` (default 2 %), and the
  APCER and BPCER there. ``--threshold CUE=VALUE`` instead measures a given threshold.

Real data, evaluation-only: a threshold chosen here is not independently measured here;
measure it on other data. ``--clips pad-video-dev`` does: every cue, at the threshold chosen
on the stills (the bezel, which crops cannot show, at its :data:`RULES` threshold, set
on LFW portraits), on the median over the clip's sampled frames (the detector's face box),
per clip and as counts of live and attack clips flagged. ``--lfw DIR`` adds the bona fide
false-alarm rate of every cue on real portraits with real backgrounds (every ``--lfw-step``-th
image; lfw-dev is greyscale here, so it cannot test the colour cues) and ``--faces DIR`` the
same on faces-small (63 colour press photos). The whole-frame cues set on bona fide data
(ADR 0017) are printed alike: ``window`` (a screen's window around the face; on lfw-dev
split into images with and without LFW's black padding, itself a rectangle around a photo),
``scaled_sharpness`` (also on the stills, with the detector's box) and, on the clips, the
second detector's face count (rule ``multiple_faces``). Example::

    .venv/bin/python tools/eval_screen_cues.py --stills ../shared/data/pad-stills-dev \\
        --clips ../shared/data/pad-video-dev --lfw ../shared/data/lfw-dev --lfw-step 3 \\
        --faces ../shared/data/faces-small
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from kycedge.core.errors import KycEdgeError
from kycedge.vision.decode import FrameImage, decode_image, read_image_file
from kycedge.vision.liveness.screen import (
    CUE_NAMES,
    FRAME_CUE_NAMES,
    MAX_SIDE_PX,
    RULES,
    ScreenConfig,
    ScreenSampler,
    face_crop,
    frame_cues,
    scaled_sharpness,
    screen_cues,
)

if TYPE_CHECKING:
    from kycedge.vision.pipeline import Pipeline

# the direction of each cue: +1 when a larger value is more screen-like
# (the physics guess, set before measuring; an AUC below 0.5 says the guess was wrong here)
DIRECTION = {"moire_peak": 1, "glare_fraction": 1, "saturation_mean": -1, "blue_shift": 1,
             "sharpness": -1, "contrast": -1, "bezel": 1, "window": 1, "scaled_sharpness": -1}
# whole-frame cues whose thresholds come from RULES (set on bona fide data, ADR 0016/0017)
RULE_CUES = ("bezel", "window", "scaled_sharpness")
PADDED_RING = 0.05     # an LFW image is padded when this share of its 3-px border ring is black


def black_padded(rgb: np.ndarray) -> bool:
    """LFW's padding: a share of the outer 3-px ring is pure black (the photo was smaller than
    the 250 x 250 crop, or rotated inside it)."""
    y = rgb.astype(np.float64).mean(axis=2)
    ring = np.concatenate([y[:3].ravel(), y[-3:].ravel(), y[:, :3].ravel(), y[:, -3:].ravel()])
    return bool(np.mean(ring < 8) >= PADDED_RING)


def auc(att: list[float], live: list[float]) -> float | None:
    """P(attack > live) + 0.5 P(tie), by ranks."""
    if not att or not live:
        return None
    a, b = np.asarray(att), np.asarray(live)
    gt = (a[:, None] > b[None, :]).sum() + 0.5 * (a[:, None] == b[None, :]).sum()
    return float(gt / (a.size * b.size))


def threshold_at_bpcer(live: list[float], bpcer: float) -> float:
    """The smallest threshold t (attack when value > t) with at most ``bpcer`` of live above it."""
    v = np.sort(np.asarray(live))
    k = int(np.floor(bpcer * v.size))          # live stills allowed above the threshold
    return float(v[v.size - 1 - k]) if k < v.size else float(v[0])


def load(stills: Path, keep_crops: bool = False) -> list[dict[str, Any]]:
    rows = list(csv.DictReader((stills / "labels.csv").open()))
    out = []
    for r in rows:
        rgb = decode_image(read_image_file(stills / r["path"]))
        k = int(r.get("rotate_cw") or 0) // 90
        if k:
            rgb = np.ascontiguousarray(np.rot90(rgb, -k))
        h, w = rgb.shape[:2]
        crop = face_crop(rgb, (0.0, 0.0, float(w), float(h))) if max(h, w) > MAX_SIDE_PX else rgb
        out.append({"path": r["path"], "label": r["label"], "source": r["source"], "cues": screen_cues(crop),
                    **({"crop": crop} if keep_crops else {})})
    return out


def evaluate(items: list[dict[str, Any]], bpcer: float, given: dict[str, float]) -> dict[str, Any]:
    per_cue: dict[str, Any] = {}
    sources = sorted({i["source"] for i in items})
    for cue in CUE_NAMES:
        d = DIRECTION[cue]
        live = [d * i["cues"][cue] for i in items if i["label"] == "live"]
        att = [d * i["cues"][cue] for i in items if i["label"] == "attack"]
        within = {}
        for s in sources:
            a_s = [d * i["cues"][cue] for i in items if i["source"] == s and i["label"] == "attack"]
            l_s = [d * i["cues"][cue] for i in items if i["source"] == s and i["label"] == "live"]
            v = auc(a_s, l_s)
            if v is not None:
                within[s] = round(v, 3)
        t = d * given[cue] if cue in given else threshold_at_bpcer(live, bpcer)
        per_cue[cue] = {
            "direction": "larger = screen" if d > 0 else "smaller = screen",
            "auc": round(auc(att, live) or 0.0, 3),
            "auc_within_source": round(float(np.mean(list(within.values()))), 3) if within else None,
            "auc_per_source": within,
            "threshold": round(d * t, 5),
            "threshold_from": "given" if cue in given else f"live stills at BPCER {bpcer:.0%}",
            "apcer": round(float(np.mean(np.asarray(att) <= t)), 4),
            "bpcer": round(float(np.mean(np.asarray(live) > t)), 4),
        }
    counts: dict[str, int] = defaultdict(int)
    for i in items:
        counts[i["label"]] += 1
    return {"data": "real (pad-stills-dev: mostly tight face crops)", "stills": dict(counts),
            "sources": sources, "cues": per_cue}


def bench(stills: Path, reps: int) -> dict[str, Any]:
    """Median ms of each crop cue over the stills' crops (1 thread, this machine, with its load)."""
    from kycedge.vision.liveness import screen

    crops = [i["crop"] for i in load(stills, keep_crops=True)]
    out: dict[str, Any] = {"crops": len(crops), "load_avg_1m": round(os.getloadavg()[0], 2)}
    for name in CUE_NAMES:
        fn = getattr(screen, name)
        ms = []
        for _ in range(reps):
            for c in crops:
                t0 = time.perf_counter()
                fn(c)
                ms.append((time.perf_counter() - t0) * 1000)
        out[name] = round(statistics.median(ms), 4)
    return out


def _flagged(value: float, cue: str, threshold: float) -> bool:
    return DIRECTION[cue] * value > DIRECTION[cue] * threshold


def _pipeline() -> Pipeline:
    from kycedge.vision import default_models_dir
    from kycedge.vision.pipeline import Pipeline

    return Pipeline.load(default_models_dir(), threads=1)


def clip_cues(clips: Path, thresholds: dict[str, float], pipe: Pipeline) -> dict[str, Any]:
    """Every cue's median over each clip's sampled frames, flagged at ``thresholds``."""
    from kycedge.unit.cli.liveness import _frames

    cfg = ScreenConfig()
    rows = list(csv.DictReader((clips / "labels.csv").open()))
    per_clip = []
    counts = {c: {"live": 0, "attack": 0} for c in (*FRAME_CUE_NAMES, "multiple_faces")}
    n = {"live": 0, "attack": 0}
    cue_ms: list[float] = []
    for r in rows:
        sampler = ScreenSampler(cfg)
        for _, rgb in _frames(clips / r["path"], 15.0):
            res = pipe.process_frame(rgb)
            if res.box is not None and res.landmarks is not None:
                before = len(sampler.cues)
                t0 = time.perf_counter()
                faces = (len(pipe.fallback.detect(FrameImage(rgb)))
                         if sampler.due and pipe.fallback is not None else None)
                sampler.offer(rgb, res.box, faces)
                if len(sampler.cues) > before:
                    cue_ms.append((time.perf_counter() - t0) * 1000)
        vals = sampler.cues
        n[r["label"]] += 1
        med = {c: float(np.median(x)) for c in FRAME_CUE_NAMES
               if len(x := [v[c] for v in vals if c in v]) >= cfg.min_frames}
        flags = [c for c in FRAME_CUE_NAMES if c in med and _flagged(med[c], c, thresholds[c])]
        two = sum(v.get("faces", 0.0) >= 2 for v in vals)
        if two >= cfg.min_frames:
            flags.append("multiple_faces")
        for c in flags:
            counts[c][r["label"]] += 1
        per_clip.append({"path": r["path"], "label": r["label"], "frames": len(vals),
                         "cues": {c: round(v, 4) for c, v in med.items()}, "two_face_frames": two,
                         "flagged_by": flags})
    return {"data": "real (pad-video-dev; no threshold set on it)", "clips": n,
            "multiple_faces": f"a second face (YuNet) in >= {cfg.min_frames} sampled frames",
            "thresholds": {c: round(t, 5) for c, t in thresholds.items()},
            "flagged": counts,
            "cue_ms_per_sampled_frame": {"median": round(statistics.median(cue_ms), 3) if cue_ms else None,
                                         "frames": len(cue_ms), "every_nth_frame": cfg.every,
                                         "load_avg_1m": round(os.getloadavg()[0], 2)},
            "per_clip": per_clip}


def bona_fide_cues(folder: Path, step: int, thresholds: dict[str, float], pipe: Pipeline) -> dict[str, Any]:
    """The false-alarm rate of every cue on real portraits (bona fide, real backgrounds);
    files that do not decode are skipped and counted."""
    files = sorted(folder.rglob("*.jpg"))[::step]
    vals = []
    padded: list[bool] = []
    skipped = 0
    for p in files:
        try:
            rgb = decode_image(read_image_file(p))
        except KycEdgeError:
            skipped += 1
            continue
        res = pipe.process_frame(rgb)
        if res.box is None:
            continue
        try:
            vals.append(frame_cues(rgb, res.box))
        except ValueError:
            continue
        padded.append(black_padded(rgb))
    out: dict[str, Any] = {"data": f"real ({folder.name}: bona fide portraits)", "images": len(vals),
                           "undecodable": skipped, "black_padded": sum(padded)}
    for c in FRAME_CUE_NAMES:
        v = np.asarray([x[c] for x in vals if c in x])
        if v.size == 0:
            out[c] = {"measured": "no image with this cue (grey images have no colour cues)"}
            continue
        out[c] = _alarms(v, c, thresholds[c])
    if any(padded):
        # the window cue on the images without LFW's padding (a padded image is a photo
        # inside a black rectangle: what the cue looks for), and on the padded ones
        w = [(x["window"], p) for x, p in zip(vals, padded, strict=True)]
        t = thresholds["window"]
        out["window_unpadded"] = _alarms(np.asarray([x for x, p in w if not p]), "window", t)
        out["window_padded"] = _alarms(np.asarray([x for x, p in w if p]), "window", t)
    out["values_window"] = [x["window"] for x in vals]
    out["values_window_unpadded"] = [x["window"] for x, p in zip(vals, padded, strict=True) if not p]
    return out


def _alarms(v: np.ndarray, cue: str, threshold: float) -> dict[str, Any]:
    if v.size == 0:
        return {"measured": "no image"}
    return {"images": int(v.size), "threshold": round(threshold, 5),
            "false_alarm_rate": round(float(np.mean([_flagged(x, cue, threshold) for x in v])), 4),
            "p1": round(float(np.percentile(v, 1)), 4), "p50": round(float(np.median(v)), 4),
            "p99": round(float(np.percentile(v, 99)), 4), "p99_5": round(float(np.percentile(v, 99.5)), 4)}


def stills_scaled_sharpness(stills: Path, threshold: float, pipe: Pipeline) -> dict[str, Any]:
    """scaled_sharpness on the stills with the detector's face box: live false alarms, attack hits
    (the 1st percentile of the live stills is one of the three sets its threshold comes from)."""
    vals: dict[str, list[float]] = {"live": [], "attack": []}
    for r in csv.DictReader((stills / "labels.csv").open()):
        rgb = decode_image(read_image_file(stills / r["path"]))
        k = int(r.get("rotate_cw") or 0) // 90
        if k:
            rgb = np.ascontiguousarray(np.rot90(rgb, -k))
        res = pipe.process_frame(rgb)
        if res.box is None:
            continue
        try:
            vals[r["label"]].append(scaled_sharpness(rgb, res.box))
        except ValueError:
            continue
    live = _alarms(np.asarray(vals["live"]), "scaled_sharpness", threshold)
    att = np.asarray(vals["attack"])
    refused = round(float(np.mean(att <= threshold)), 4) if att.size else None
    return {"data": "real (pad-stills-dev crops, detector box)", "live": live,
            "attack": {"stills": int(att.size), "refused_share": refused}}


def simulated_cues(lfw: Path, skip: int, n: int, thresholds: dict[str, float],
                   pipe: Pipeline) -> dict[str, Any]:
    """The whole-frame cues on SIMULATED presentations (lab/liveness_sim, written before these
    cues): for the first ``n`` lfw-dev identities after ``skip`` (the same portraits as
    tools/eval_liveness.py), the synthetic bona fide head and the portrait printed and on a
    screen (a plane with a margin or a black bezel, held at 450-600 mm), 3 frames each (0,
    0.5, 1 s, no prompt); per species the share of portraits whose median is past each
    rule's threshold. LFW is grey: no colour cue here."""
    from kycedge.lab.liveness_sim.build import attacker, portrait_mesh, subject
    from kycedge.vision.liveness.observe import load_observer

    observer = load_observer(pipe.manifest, threads=1)
    root = lfw / "images" if (lfw / "images").is_dir() else lfw
    people = sorted(p for p in root.iterdir() if p.is_dir())[skip:]
    per: dict[str, list[dict[str, float]]] = {"bona-fide": [], "print": [], "screen": []}
    used = 0
    for k, d in enumerate(people):
        if used >= n:
            break
        imgs = sorted(d.glob("*.jpg"))
        pm = portrait_mesh(pipe, observer, decode_image(imgs[0].read_bytes())) if imgs else None
        if pm is None:
            continue
        used += 1
        for sp in per:
            rng = np.random.default_rng(k)
            perf = subject(*pm, rng) if sp == "bona-fide" else attacker(*pm, sp, rng)
            vals = []
            for t in (0.0, 0.5, 1.0):
                rgb = perf.frame(t)
                res = pipe.process_frame(rgb)
                if res.box is not None:
                    with contextlib.suppress(ValueError):
                        vals.append(frame_cues(rgb, res.box))
            if vals:
                per[sp].append({c: float(np.median([v[c] for v in vals if c in v]))
                                for c in RULE_CUES if any(c in v for v in vals)})
    out: dict[str, Any] = {"data": "SIMULATED (lab/liveness_sim from lfw-dev portraits)", "portraits": used}
    for sp, rows in per.items():
        out[sp] = {"portraits_with_a_face": len(rows)}
        for c in RULE_CUES:
            v = [r[c] for r in rows if c in r]
            out[sp][c] = {"flagged": round(float(np.mean([_flagged(x, c, thresholds[c]) for x in v])), 4)
                          if v else None, "p50": round(float(np.median(v)), 4) if v else None}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stills", type=Path, default=Path("../shared/data/pad-stills-dev"))
    ap.add_argument("--bpcer", type=float, default=0.02, help="BPCER on live stills that sets each threshold")
    ap.add_argument("--threshold", action="append", default=[], metavar="CUE=VALUE",
                    help="measure this threshold instead of choosing one")
    ap.add_argument("--clips", type=Path, default=None, help="pad-video-dev: measure the cues on real clips")
    ap.add_argument("--lfw", type=Path, default=None, help="lfw-dev: false alarms on real portraits")
    ap.add_argument("--faces", type=Path, default=None, help="faces-small: false alarms on colour portraits")
    ap.add_argument("--lfw-step", type=int, default=3, help="every n-th LFW image (default 3)")
    ap.add_argument("--simulated", type=int, default=0, metavar="N",
                    help="with --lfw: the whole-frame cues on N simulated bona fide / print / screen "
                    "presentations (lfw-dev identities after the first 40)")
    ap.add_argument("--bench", type=int, default=0, help="time each crop cue over the stills N times")
    ap.add_argument("--values", type=Path, default=None, help="write each still's cues here (JSON lines)")
    args = ap.parse_args(argv)
    given: dict[str, float] = {}
    for t in args.threshold:
        name, _, val = t.partition("=")
        if name not in CUE_NAMES:
            ap.error(f"--threshold: expected one of {list(CUE_NAMES)}, got {name!r}")
        given[name] = float(val)
    if not (args.stills / "labels.csv").is_file():
        ap.error(f"--stills: {args.stills} has no labels.csv")
    items = load(args.stills)
    if args.values:
        with args.values.open("w") as f:
            for i in items:
                f.write(json.dumps({"label": i["label"], "source": i["source"], **i["cues"]}) + "\n")
    summary = evaluate(items, args.bpcer, given)
    thresholds = {c: v["threshold"] for c, v in summary["cues"].items()}
    for c in RULE_CUES:
        thresholds[c] = RULES[c].threshold
        summary["cues"][c] = {"measured": "not on crops (no surround); threshold from RULES "
                              "(bona fide data, ADR 0016/0017)", "threshold": thresholds[c]}
    if args.bench:
        summary["bench_ms_per_crop"] = bench(args.stills, args.bench)
    if args.simulated and not args.lfw:
        ap.error("--simulated needs --lfw")
    if args.clips or args.lfw or args.faces:
        pipe = _pipeline()
        if args.lfw:
            summary["lfw"] = bona_fide_cues(args.lfw, max(1, args.lfw_step), thresholds, pipe)
        if args.faces:
            summary["faces"] = bona_fide_cues(args.faces, 1, thresholds, pipe)
        if args.lfw and args.faces:
            # the window threshold's source: bona fide photos with real surroundings (every
            # faces-small photo; the lfw-dev images without LFW's black padding)
            pool = summary["lfw"]["values_window_unpadded"] + summary["faces"]["values_window"]
            summary["window_threshold_source"] = {
                "data": "lfw-dev without black padding + all of faces-small", "images": len(pool),
                "p99_5": round(float(np.percentile(pool, 99.5)), 4), "rule": RULES["window"].threshold}
        for k in ("lfw", "faces"):
            summary.get(k, {}).pop("values_window_unpadded", None)
            summary.get(k, {}).pop("values_window", None)
        summary["stills_scaled_sharpness"] = stills_scaled_sharpness(
            args.stills, RULES["scaled_sharpness"].threshold, pipe)
        if args.clips:
            summary["clips"] = clip_cues(args.clips, thresholds, pipe)
        if args.simulated:
            summary["simulated"] = simulated_cues(args.lfw, 40, args.simulated, thresholds, pipe)
    json.dump(summary, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
