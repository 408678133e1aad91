#!/usr/bin/env python3
"""Write the VISION-owned ``pipeline`` section of ``models/manifest.json``.

    .venv/bin/python tools/vision_manifest.py [--models models]

The ``models`` section belongs to the conversion tool, ``matching`` is written by
``tools/evaluate.py --write-threshold``; this script changes ``pipeline`` only (read,
modify, write to a temp file, fsync, ``os.replace``). The choice and its figures are in
docs/decisions/0002-detector-and-alignment.md (detector) and
docs/decisions/0012-template-from-the-best-frames.md (template path).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PIPELINE = {
    "detector": "blazeface",
    "detector_kind": "blazeface",
    "landmarks": "facemesh",
    "mesh_passes": 1,
    "embedder": "sface",
    "flip_average": True,
    "fusion": "mean",
    # a still image (embed, ID photo, evaluation, self-test) where BlazeFace finds no face gets
    # one more look with YuNet-320 fp16 (never a session frame); no template of a face
    # BlazeFace finds changes, so the template version stays
    "fallback_detector": "yunet_320_fp16",
    "mesh_convention": False,
    # the template path changed the templates (FaceMesh crops, mirrored average): a version of
    # its own, so the carrier never compares them with references made by the old path
    "model_version": "2021dec-kycedge.2+tpl1",
    "alignment": "guidance on every frame from BlazeFace (128x128, float16) points with geometric mouth "
                 "corners; the template crop of each of the best K frames is aligned on FaceMesh's five "
                 "points (eye-contour centres, nose tip, mouth corners; one pass on the BlazeFace ROI) by a "
                 "5-point similarity (Umeyama) onto the SFace template, 112x112, bilinear; each crop and "
                 "its mirror image embedded, summed, L2-normalised; the K averaged (uniform weights), "
                 "L2-normalised (a single photo: K = 1; when BlazeFace finds no face in a still image, "
                 "YuNet-320 fp16 detects instead and its points take BlazeFace's place)",
    "decision": "docs/decisions/0012-template-from-the-best-frames.md",
}


def write_manifest(path: Path, data: dict[str, object]) -> None:
    """Canonical form (sorted keys, 2-space indent, as the conversion tool writes it), atomically."""
    tmp = path.with_suffix(".json.tmp")
    with open(tmp, "w") as fh:
        fh.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=Path, default=ROOT / "models")
    args = ap.parse_args()
    path = args.models / "manifest.json"
    data = json.loads(path.read_text())
    roles = ("detector", "landmarks", "embedder", "fallback_detector")
    missing = [PIPELINE[r] for r in roles if PIPELINE[r] != "none" and PIPELINE[r] not in data["models"]]
    if missing:
        raise SystemExit(f"{path}: models section lacks {missing}; has {sorted(data['models'])}")
    data["pipeline"] = PIPELINE
    write_manifest(path, data)
    print(f"wrote pipeline section to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
