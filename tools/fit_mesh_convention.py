#!/usr/bin/env python3
"""Fit the FaceMesh-to-detector-convention offsets of ``kycedge.vision.align.FACEMESH_OFFSETS_PX``.

    .venv/bin/python tools/fit_mesh_convention.py ../shared/data/faces-small [fixtures/faces]
        [--target yunet_320_fp16] [--json out.json]

SFace's template (OpenCV's ``alignCrop``) places five points as RetinaFace/MTCNN-style
detectors mark them; FaceMesh's five points (eye-contour centres, nose tip 1, mouth corners
61/291) follow another convention. For every face of the given folders (NEVER lfw-dev, the
evaluation set) and its mirror image: BlazeFace, FaceMesh on its ROI, the shipped YuNet
(``--target``) on the same image; both five-point sets are taken into the template by
FaceMesh's own alignment and their difference recorded (faces narrower than 40 px and
YuNet faces overlapping less than IoU 0.4 are skipped). The mean difference is made
mirror-symmetric (left and right points averaged, the sideways shift removed: a convention
has none, and one that survives mirroring is a coordinate artefact), printed with its
spread and split-half stability, and written to ``--json``. ADR 0012 has the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "device"))


def symmetric(mean: np.ndarray) -> np.ndarray:
    """The mirror-symmetric part of 5x2 offsets (right eye, left eye, nose, right/left mouth)."""
    cx = float(mean[:, 0].mean())
    x = mean[:, 0] - cx
    ex, mx = (x[1] - x[0]) / 2.0, (x[4] - x[3]) / 2.0
    ey, my = (mean[0, 1] + mean[1, 1]) / 2.0, (mean[3, 1] + mean[4, 1]) / 2.0
    return np.array([[-ex, ey], [ex, ey], [0.0, mean[2, 1]], [-mx, my], [mx, my]])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", type=Path, nargs="+")
    ap.add_argument("--models", type=Path, default=ROOT / "models")
    ap.add_argument("--target", default="yunet_320_fp16")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if any("lfw" in str(f).lower() for f in args.folders):
        raise SystemExit("lfw-dev is the evaluation set: fit on other faces")

    from kycedge.core.errors import ImageError
    from kycedge.vision.align import alignment_matrix, transform_points
    from kycedge.vision.decode import FrameImage, decode_image
    from kycedge.vision.detect import YuNetDetector, iou
    from kycedge.vision.pipeline import Pipeline, VisionConfig
    from kycedge.vision.quality import QualityConfig
    from kycedge.vision.runtime import Model

    pipe = Pipeline.load(args.models, config=VisionConfig(quality=QualityConfig(enabled=False)),
                         overrides={"fallback_detector": "none"})
    if pipe.mesh is None:
        raise SystemExit("the manifest's pipeline has no FaceMesh (landmarks)")
    entry = pipe.manifest.models[args.target]
    target = YuNetDetector(Model(pipe.manifest.read_checked(entry), threads=1, name=entry.name))
    exts = (".jpg", ".jpeg", ".png")
    paths = sorted(p for f in args.folders for p in f.iterdir() if p.suffix.lower() in exts)
    diffs, image_of = [], []
    for n, p in enumerate(paths):
        try:
            rgb = decode_image(p.read_bytes())
        except ImageError as e:
            print(f"skip {p.name}: {e.reason}", file=sys.stderr)
            continue
        for img in (rgb, np.ascontiguousarray(rgb[:, ::-1])):
            frame = FrameImage(img)
            found = target.detect(frame)
            if not found:
                continue
            boxes = np.array([t.box for t in found])
            for f in pipe.detector.detect(frame):
                if f.width < 40:
                    continue
                mesh = pipe.mesh.landmarks(frame, f.box, f.keypoints[0], f.keypoints[1])
                if mesh is None:
                    continue
                ov = iou(np.array(f.box), boxes)
                j = int(np.argmax(ov))
                if ov[j] < 0.4:
                    continue
                m = alignment_matrix(mesh.five)
                diffs.append(transform_points(m, found[j].landmarks) - transform_points(m, mesh.five))
                image_of.append(n)
    if not diffs:
        raise SystemExit("no face measured")
    d = np.stack(diffs)
    mean = d.mean(axis=0)
    sym = symmetric(mean)
    even = np.asarray(image_of) % 2 == 0  # split by image (a photo and its mirror stay together)
    halves = float(np.abs(symmetric(d[even].mean(axis=0)) - symmetric(d[~even].mean(axis=0))).max())
    out = {"faces": len(diffs), "images": len(paths), "target": args.target,
           "mean_px": np.round(mean, 3).tolist(), "std_px": np.round(d.std(axis=0), 3).tolist(),
           "offsets_px": np.round(sym, 2).tolist(), "split_half_max_diff_px": round(halves, 3)}
    print(f"{len(diffs)} faces (with mirrors) from {len(paths)} images, target {args.target}",
          file=sys.stderr)
    print(f"symmetric offsets (template px, right eye, left eye, nose, right/left mouth): "
          f"{out['offsets_px']}; split-half max difference {halves:.3f} px", file=sys.stderr)
    text = json.dumps(out, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
