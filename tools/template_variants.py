#!/usr/bin/env python3
"""Which template-crop steps help: alignment and test-time-averaging variants on one detection.

    .venv/bin/python tools/template_variants.py ../shared/data/lfw-dev [--models models]
        [--limit N] [--json out.json]

For every image: the shipped detector once (gates off), FaceMesh once on the BlazeFace ROI
(and a second time on the ROI from its own landmarks), then the 112x112 crop for each
variant, each embedded plain and mirrored with the shipped int8 SFace. The variants are
then scored with ``tools/evaluate.py``'s protocol (5-fold accuracy, TAR at FAR 1e-3/1e-4
over all cross-identity pairs): one line per variant on stderr, a JSON summary on stdout.

Variants (``+flip`` = the crop and its mirror image averaged):

- ``det``: BlazeFace points with geometric mouth corners (the guide's points);
- ``mesh1``: FaceMesh five points, one pass (what ships); ``mesh2``: a second pass;
  ``mesh1+mesh2``: both crops averaged;
- ``corners``: FaceMesh with eye points = eye-corner midpoints;
- ``rigid`` / ``all``: Umeyama of 44 rigid / all 468 FaceMesh points onto their mean
  template position, the mean built from faces-small and the fixtures (never lfw-dev);
- ``tta3``: the mesh1 crop at scales 0.96 / 1.00 / 1.04 averaged.

Results (2026-12-01) are in docs/decisions/0012-template-from-the-best-frames.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "device"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import evaluate as ev  # noqa: E402 - after the path set-up

EYES = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246,
        263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
RIGID = np.array((*EYES, 6, 197, 195, 5, 4, 1, 2, 98, 327, 61, 291, 168))
CROPS = ("det", "mesh1", "mesh2", "corners", "rigid", "all", "s096", "s104")
COMBOS = {
    "det": ["det"], "mesh1": ["mesh1"], "mesh2": ["mesh2"], "mesh1+mesh2": ["mesh1", "mesh2"],
    "corners": ["corners"], "rigid": ["rigid"], "all": ["all"], "tta3": ["mesh1", "s096", "s104"],
}


@dataclass
class Row:
    """The fields of a PipelineResult that ``evaluate()`` reads."""

    ok: bool
    template: np.ndarray | None
    reason: str = "ok"
    ms: dict[str, float] = field(default_factory=dict)
    quality: dict[str, float] = field(default_factory=dict)


def scaled(m: np.ndarray, s: float) -> np.ndarray:
    """``m`` followed by a scaling by ``s`` about the template's face centre (56, 60)."""
    a = np.array([[s, 0.0, 56.0 * (1 - s)], [0.0, s, 60.0 * (1 - s)], [0.0, 0.0, 1.0]])
    out: np.ndarray = (a @ np.vstack([m, [0.0, 0.0, 1.0]]))[:2]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--models", type=Path, default=ROOT / "models")
    ap.add_argument("--calibration", type=Path, default=ROOT.parent / "shared" / "data" / "faces-small",
                    help="photos for the mean FaceMesh template (never the evaluation set)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N identities (smoke runs)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    from kycedge.core.errors import ImageError
    from kycedge.protocol.match import l2_normalize
    from kycedge.vision.align import SFACE_SIZE, alignment_matrix, similarity_transform, transform_points
    from kycedge.vision.decode import FrameImage, decode_image, warp_affine
    from kycedge.vision.pipeline import Pipeline, VisionConfig, choose_subject
    from kycedge.vision.quality import QualityConfig

    pipe = Pipeline.load(args.models, config=VisionConfig(quality=QualityConfig(enabled=False)),
                         overrides={"landmarks": "facemesh"})
    mesh, emb = pipe.mesh, pipe.embedder
    assert mesh is not None

    def detect(frame: FrameImage) -> tuple[Any, Any]:
        faces = pipe.detector.detect(frame)
        if not faces:
            return None, None
        f = faces[choose_subject(faces, frame.shape[1], frame.shape[0])]
        return f, mesh.landmarks(frame, f.box, f.keypoints[0], f.keypoints[1])

    cal = sorted(args.calibration.rglob("*.jpg")) + sorted((ROOT / "fixtures" / "faces").glob("*.*g"))
    placed = []
    for p in cal:
        try:
            fr = FrameImage(decode_image(p.read_bytes()))
        except ImageError:  # a calibration photo that does not decode is skipped
            continue
        _f, r = detect(fr)
        if r is not None:
            placed.append(transform_points(alignment_matrix(r.five), r.points[:, :2]))
    if not placed:
        raise SystemExit(f"no calibration face found under {args.calibration}")
    canon = np.mean(placed, axis=0)

    root = ev.image_root(args.folder)
    paths = sorted(root.rglob("*.jpg"))
    if args.limit:
        keep = set(sorted({p.parent.name for p in paths})[: args.limit])
        paths = [p for p in paths if p.parent.name in keep]
    plain = {c: np.zeros((len(paths), 128), np.float32) for c in CROPS}
    mirror = {c: np.zeros((len(paths), 128), np.float32) for c in CROPS}
    ok = np.zeros(len(paths), bool)
    for n, p in enumerate(paths):
        fr = FrameImage(decode_image(p.read_bytes()))
        f, r = detect(fr)
        if f is None:
            continue
        ok[n] = True
        ms = {c: alignment_matrix(f.landmarks) for c in CROPS}
        if r is not None:
            pts, five = r.points[:, :2], r.five
            corners = five.copy()
            corners[0], corners[1] = (pts[33] + pts[133]) / 2, (pts[263] + pts[362]) / 2
            r2 = mesh.rerun(fr, r)
            m1 = alignment_matrix(five)
            ms.update({"mesh1": m1, "mesh2": alignment_matrix(r2.five if r2 is not None else five),
                       "corners": alignment_matrix(corners),
                       "rigid": similarity_transform(pts[RIGID], canon[RIGID]),
                       "all": similarity_transform(pts, canon), "s096": scaled(m1, 0.96),
                       "s104": scaled(m1, 1.04)})
        for c in CROPS:
            crop = warp_affine(fr, ms[c], SFACE_SIZE, SFACE_SIZE)
            plain[c][n] = emb.embed_plain(crop)
            mirror[c][n] = emb.embed_plain(np.ascontiguousarray(crop[:, ::-1]))

    folds, pairs = ev.parse_pairs(sorted(args.folder.glob("pairs*.txt"))[0])
    if args.limit:
        pairs = [q for q in pairs if q[0] in keep and q[2] in keep]
    pairs_file = sorted(args.folder.glob("pairs*.txt"))[0]
    out: dict[str, Any] = {}
    for name, crops in COMBOS.items():
        for flip in (False, True):
            vecs = [plain[c] for c in crops] + ([mirror[c] for c in crops] if flip else [])
            total = np.sum(vecs, axis=0)
            results = {p: Row(True, l2_normalize(total[i])) if ok[i] else Row(False, None, "no-face")
                       for i, p in enumerate(paths)}
            s = ev.evaluate(results, pairs_file, root, folds, pairs)
            a = s["tar_at_far_all_cross_identity"]
            key = name + ("+flip" if flip else "")
            out[key] = {"accuracy": s["accuracy"]["mean"], "accuracy_std": s["accuracy"]["std"],
                        "tar_1e-3": a["0.001"]["tar"], "tar_1e-4": a["0.0001"]["tar"],
                        "threshold_1e-4": a["0.0001"]["threshold"]}
            acc = s["accuracy"]
            print(f"{key:18s} accuracy {acc['mean'] * 100:.2f} % +- {acc['std'] * 100:.2f}, "
                  f"TAR@1e-3 {a['0.001']['tar']:.4f}, TAR@1e-4 {a['0.0001']['tar']:.4f} "
                  f"(t={a['0.0001']['threshold']:.4f})", file=sys.stderr)
    summary = {"images": len(paths), "failure_to_detect": int((~ok).sum()),
               "calibration_faces": len(placed), "variants": out}
    text = json.dumps(summary, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
