#!/usr/bin/env python3
"""Multi-frame fusion on a PROXY: LFW identities with several photos stand in for a session.

    .venv/bin/python tools/evaluate_fusion.py ../shared/data/lfw-dev [--k 3] [--models models]
        [--set key=value ...] [--json out.json] [--no-progress]

A unit fuses the best K frames of one session (seconds apart, one light, one camera). No
such sessions with identities exist in the evaluation data, so this tool uses the closest
real proxy: for every lfw-dev identity with at least K + 1 photos, each photo in turn (at
most ``--per-identity``) is the "ID photo" (reference, single-image template path), and
the identity's OTHER photos are the session's frames: those passing the quality gates are
candidates, the best K by capture score are fused exactly as a session fuses them
(``Pipeline.template``; checked below). LFW photos of one person differ far more (years,
light, pose) than frames of one session, so the figures show what fusion does to errors,
not a unit's session accuracy.

Compared, each against the same references:

- ``best-1``: the template of the best frame alone (a session with K = 1);
- ``mean-K`` / ``weighted-K``: K frames fused with uniform / quality weights.

Genuine scores: a session against its own identity's ID photo. Impostor scores: every
session against every photo of every other identity (each as an ID photo). Printed: TAR
and FAR at the manifest threshold, TAR at FAR 1e-3 / 1e-4 over those impostor pairs. One JSON summary last.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "device"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from evaluate import image_root, parse_value, threshold_at_far  # noqa: E402 - after the path set-up


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--models", type=Path, default=ROOT / "models")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--per-identity", type=int, default=5,
                    help="at most this many sessions (ID photos) per identity, so a few identities with "
                    "many photos do not dominate (default 5)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N identities (smoke runs)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    from kycedge.vision.decode import decode_image
    from kycedge.vision.pipeline import Pipeline, VisionConfig
    from kycedge.vision.template import fuse, fusion_weights

    overrides = {k: parse_value(v) for k, v in (s.split("=", 1) for s in args.set)}
    pipe = Pipeline.load(args.models, config=VisionConfig(threads=args.threads), overrides=overrides or None)
    root = image_root(args.folder)
    by_id: dict[str, list[Path]] = {}
    for p in sorted(root.rglob("*.jpg")):
        by_id.setdefault(p.parent.name, []).append(p)
    if args.limit:
        by_id = dict(list(by_id.items())[: args.limit])
    paths = [p for ps in by_id.values() for p in ps]
    try:
        from tqdm import tqdm
        it: Any = tqdm(paths, desc="frames", unit="img", file=sys.stderr, disable=args.no_progress)
    except ImportError:
        it = paths
    # per image: the single-image template (= one candidate's embedding) and, when the
    # photo passes the gates, its capture score (it may then be a session frame)
    single: dict[Path, np.ndarray] = {}
    score: dict[Path, float] = {}
    t0 = time.perf_counter()
    for p in it:
        rgb = decode_image(p.read_bytes())
        g = pipe.guide(rgb)
        if not g.ok:
            continue
        c = pipe.candidate(rgb, g)
        if c is None:
            continue
        single[p] = pipe.template([c])
        score[p] = g.score
    wall = time.perf_counter() - t0
    refs = [p for p in paths if p in single]
    ref_mat = np.stack([single[p] for p in refs]).astype(np.float32)
    ref_ident = np.asarray([p.parent.name for p in refs])

    k = args.k
    variants = {"best-1": (1, True), f"mean-{k}": (k, False), f"weighted-{k}": (k, True)}
    gen: dict[str, list[float]] = {v: [] for v in variants}
    imp: dict[str, list[np.ndarray]] = {v: [] for v in variants}
    sessions = 0
    for ident, ps in by_id.items():
        enrolled = [p for p in ps if p in single]
        if len(enrolled) < k + 1:
            continue
        for probe in enrolled[: args.per_identity]:
            frames = sorted((p for p in enrolled if p != probe), key=lambda p: -score[p])
            sessions += 1
            others = ref_mat[ref_ident != ident]
            for name, (kk, weighted) in variants.items():
                chosen = frames[:kk]
                t = fuse([single[p] for p in chosen], fusion_weights([score[p] for p in chosen], weighted))
                gen[name].append(float(np.dot(t, single[probe])))
                imp[name].append(others @ t)
    # the fusion here is the pipeline's: Pipeline.template of K candidates == fuse of their templates
    probe_ident = next(i for i, ps in by_id.items() if sum(p in single for p in ps) >= k)
    ps = [p for p in by_id[probe_ident] if p in single][:k]
    cands = []
    for p in ps:
        rgb = decode_image(p.read_bytes())
        cands.append(pipe.candidate(rgb, pipe.guide(rgb)))
    direct = pipe.template(cands)
    via = fuse([single[p] for p in ps], fusion_weights([score[p] for p in ps], pipe.fusion_weighted))
    assert float(np.dot(direct, via)) > 0.99999, "fusion here differs from Pipeline.template"

    thr = pipe.threshold
    out: dict[str, Any] = {}
    for name in variants:
        g_arr = np.asarray(gen[name])
        i_arr = np.concatenate(imp[name]).astype(np.float32)
        row = {"sessions": int(g_arr.size), "impostor_pairs": int(i_arr.size),
               "tar_at_manifest_threshold": float(np.mean(g_arr >= thr)),
               "far_at_manifest_threshold": float(np.mean(i_arr >= thr)),
               "genuine_median": float(np.median(g_arr))}
        for far in (1e-3, 1e-4):
            t = threshold_at_far(i_arr, far)
            row[f"tar_at_far_{far:g}"] = float(np.mean(g_arr >= t))
        out[name] = row
        print(f"{name:12s} sessions {row['sessions']}, impostor pairs {row['impostor_pairs']}: "
              f"TAR {row['tar_at_manifest_threshold']:.4f} / FAR {row['far_at_manifest_threshold']:.2e} at "
              f"t={thr:.4f}; TAR@1e-3 {row['tar_at_far_0.001']:.4f}, "
              f"TAR@1e-4 {row['tar_at_far_0.0001']:.4f}; genuine median {row['genuine_median']:.4f}",
              file=sys.stderr)
    summary = {
        "proxy": "LFW identities with >= K+1 photos: the other photos of the identity stand in for one "
                 "session's frames (real photos, NOT session frames)",
        "data": f"{args.folder.resolve().name} ({len(paths)} images, {len(refs)} pass the gates)",
        "k": k, "threshold": thr, "identities_used": sum(
            1 for ps in by_id.values() if sum(p in single for p in ps) >= k + 1),
        "variants": out, "pipeline": dict(pipe.manifest.pipeline), "overrides": overrides,
        "wall_s": round(wall, 1), "measured": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    text = json.dumps(summary, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
