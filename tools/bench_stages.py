#!/usr/bin/env python3
"""CPU time per pipeline configuration: detector (+ FaceMesh) and the whole frame.

    .venv/bin/python tools/bench_stages.py [../shared/data/lfw-dev] [--n 90] [--models models]
        [--config NAME:key=value,key=value ...]

``time.process_time`` (CPU seconds of this process) rather than wall time, so that other
load on a shared machine inflates the figures less; one thread; gates off. Without
``--config`` it compares the shipped pipeline with the YuNet variants of the model set.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "device"))

DEFAULT_CONFIGS = [
    "shipped:",
    "yunet160:detector=yunet_160_int8,detector_kind=yunet,landmarks=none",
    "yunet160+mesh:detector=yunet_160_int8,detector_kind=yunet",
    "yunet320:detector=yunet_320_int8,detector_kind=yunet,landmarks=none",
    "yunet320+mesh:detector=yunet_320_int8,detector_kind=yunet",
    "blazeface-geometric:landmarks=none",
]


def parse_config(text: str) -> tuple[str, dict[str, Any]]:
    name, _, rest = text.partition(":")
    out: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        k, _, v = item.partition("=")
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return name, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path, nargs="?", default=ROOT.parent / "shared" / "data" / "lfw-dev")
    ap.add_argument("--n", type=int, default=90)
    ap.add_argument("--models", type=Path, default=ROOT / "models")
    ap.add_argument("--config", action="append", default=[])
    args = ap.parse_args()

    from kycedge.vision.decode import decode_image
    from kycedge.vision.pipeline import Pipeline, VisionConfig
    from kycedge.vision.quality import QualityConfig

    root = args.folder / "images" if (args.folder / "images").is_dir() else args.folder
    paths = sorted(root.rglob("*.jpg"))
    paths = [paths[i] for i in np.linspace(0, len(paths) - 1, min(args.n, len(paths))).round().astype(int)]
    frames = [decode_image(p.read_bytes()) for p in paths]
    cfg = VisionConfig(quality=QualityConfig(enabled=False))
    summary = {}
    for name, overrides in map(parse_config, args.config or DEFAULT_CONFIGS):
        try:
            pipe = Pipeline.load(args.models, config=cfg, overrides=overrides or None)
        except Exception as e:  # a model the set does not have: report and go on
            print(f"{name:20s} skipped: {e}", file=sys.stderr)
            continue
        for f in frames[:5]:
            pipe.process_frame(f)
        det, frame = [], []
        for f in frames:
            t = time.process_time()
            faces = pipe.detector.detect(f)
            if pipe.mesh is not None and faces:
                pipe.mesh.refine(f, faces[0].box, faces[0].keypoints[0], faces[0].keypoints[1])
            det.append((time.process_time() - t) * 1000)
            t = time.process_time()
            pipe.process_frame(f)
            frame.append((time.process_time() - t) * 1000)
        summary[name] = {"detect_cpu_ms_median": float(np.median(det)),
                         "frame_cpu_ms_median": float(np.median(frame)), "overrides": overrides}
        print(f"{name:20s} detect (+FaceMesh) CPU median {np.median(det):6.2f} ms; "
              f"process_frame CPU median {np.median(frame):6.2f} ms", file=sys.stderr)
    print(json.dumps({"images": len(frames), "configs": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
