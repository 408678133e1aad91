#!/usr/bin/env python3
"""Stage-by-stage cost of the single-image template path (``Pipeline.process_frame``).

    .venv/bin/python tools/profile_template_path.py [../shared/data/lfw-dev] [--n 200]
        [--models models] [--repeat 3] [--json out.json]

Replays, for each image, the steps ``process_frame`` takes with the pipeline's own
objects and functions (gates off, as ``tools/bench_peers.py``), timing each stage on its
own: the Pillow copy of the frame, BlazeFace (letterbox warp, input fill, invoke, decoding),
the subject choice + coarse aligned crop (whole, as before, and the measured part the
guide now warps) + gate measures, FaceMesh (ROI warp, input fill,
invoke, points back to the image), the 112x112 align warp, SFace (input fill, invoke,
dequantise) for the crop and its mirror, fusion; then the whole ``process_frame`` on the
same frame, so that the sum of the stages can be compared with the real call (the rest
is Python overhead between the stages). Decoding the file is timed once per image too,
though the bench does not time it. Each image is run ``--repeat`` times and the fastest
run of each stage is kept (the least disturbed by other load on a shared machine); the
median over images is printed for wall time (``perf_counter``) and CPU time
(``thread_time``: the runtime runs on the calling thread at 1 thread).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "device"))
sys.path.insert(0, str(ROOT / "tools"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path, nargs="?", default=ROOT.parent / "shared" / "data" / "lfw-dev")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--models", type=Path, default=ROOT / "models")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from bench_peers import list_images
    from kycedge.vision.align import SFACE_SIZE, alignment_matrix
    from kycedge.vision.decode import FrameImage, decode_image, warp_affine
    from kycedge.vision.detect import BlazeFaceDetector, decode_blazeface, letterbox_matrix
    from kycedge.vision.mesh import roi_matrix
    from kycedge.vision.pipeline import Pipeline, VisionConfig, choose_subject
    from kycedge.vision.quality import QualityConfig, assess, dominance
    from kycedge.vision.runtime import dequantize
    from kycedge.vision.template import fuse, fusion_weights

    pipe = Pipeline.load(args.models, config=VisionConfig(threads=1, quality=QualityConfig(enabled=False)))
    det, mesh, emb = pipe.detector, pipe.mesh, pipe.embedder
    if mesh is None or not isinstance(det, BlazeFaceDetector):
        raise SystemExit("expected the shipped BlazeFace + FaceMesh pipeline")
    dmodel, mmodel, emodel = det.model, mesh.model, emb.model
    best: dict[str, list[tuple[float, float]]] = {}

    def timed(name: str, fn: Callable[[], Any], sink: dict[str, tuple[float, float]]) -> Any:
        t0, c0 = time.perf_counter(), time.thread_time()
        out = fn()
        w, c = (time.perf_counter() - t0) * 1e3, (time.thread_time() - c0) * 1e3
        old = sink.get(name)
        sink[name] = (w, c) if old is None or w < old[0] else old
        return out

    def invoke(model: Any) -> Callable[[], None]:
        return model._interp.invoke  # type: ignore[no-any-return]

    def one_pass(data: bytes, sink: dict[str, tuple[float, float]]) -> None:
        rgb = timed("decode (not in the bench)", lambda: decode_image(data), sink)
        frame = timed("frame: Pillow copy", lambda: (f := FrameImage(rgb), f.image())[0], sink)
        h, w = rgb.shape[:2]
        m = letterbox_matrix(w, h, det.size)
        view = timed("blazeface: letterbox warp 128", lambda: warp_affine(frame, m, det.size, det.size), sink)

        def fill_det() -> None:
            buf = dmodel._interp.tensor(dmodel.inputs[0].index)()
            np.divide(view, np.float32(127.5), out=buf[0])
            np.subtract(buf, np.float32(1.0), out=buf)
            del buf

        timed("blazeface: input fill", fill_det, sink)
        timed("blazeface: invoke", invoke(dmodel), sink)
        faces = timed("blazeface: whole detect()", lambda: det.detect(frame), sink)
        if not faces:
            return
        outs = [dmodel._interp.get_tensor(s.index) for s in dmodel.outputs]
        timed("blazeface: decode + NMS", lambda: decode_blazeface(
            outs[det._reg], outs[det._cls], score_threshold=det.score_threshold,
            iou_threshold=det.iou_threshold, size=det.size), sink)
        idx = choose_subject(faces, w, h)
        face = faces[idx]
        coarse = timed("gates: whole coarse warp 112 (before)", lambda: warp_affine(
            frame, alignment_matrix(face.landmarks), SFACE_SIZE, SFACE_SIZE), sink)
        timed("gates: measured part of it (shipped)", lambda: pipe._gate_crop(frame, face.landmarks), sink)
        timed("gates: measures (assess)", lambda: assess(
            face.landmarks, coarse, dominance([f.width for f in faces], idx), pipe.config.quality), sink)
        g = timed("guide: whole _guide()", lambda: pipe._guide(frame, {}), sink)
        mm = roi_matrix(face.box, face.keypoints[0], face.keypoints[1], mesh.size)
        mcrop = timed("facemesh: ROI warp 192", lambda: warp_affine(frame, mm, mesh.size, mesh.size), sink)

        def fill_mesh() -> None:
            buf = mmodel._interp.tensor(mmodel.inputs[0].index)()
            np.divide(mcrop, np.float32(255.0), out=buf[0])
            del buf

        timed("facemesh: input fill", fill_mesh, sink)
        timed("facemesh: invoke", invoke(mmodel), sink)
        res = timed("facemesh: whole landmarks()", lambda: mesh.landmarks(
            frame, face.box, face.keypoints[0], face.keypoints[1]), sink)
        five = res.five if res is not None else face.landmarks
        crop = timed("align: warp 112", lambda: warp_affine(
            frame, alignment_matrix(five), SFACE_SIZE, SFACE_SIZE), sink)

        def fill_emb(images: list[Any]) -> Callable[[], None]:
            def fill() -> None:
                buf = emodel._interp.tensor(emodel.inputs[0].index)()
                for i, c in enumerate(images):
                    np.take(emb._lut, c, out=buf[i])
                del buf
            return fill

        emodel.set_batch(1)
        timed("sface: input fill (LUT), 1 image", fill_emb([crop]), sink)
        timed("sface: invoke, batch 1 (crop alone)", invoke(emodel), sink)
        emodel.set_batch(2)
        timed("sface: input fill (LUT), crop + mirror", fill_emb([crop, crop[:, ::-1]]), sink)
        timed("sface: invoke, batch 2 (crop + mirror)", invoke(emodel), sink)
        timed("sface: output + dequantise", lambda: [dequantize(emodel._interp.get_tensor(s.index), s)
                                                     for s in emodel.outputs], sink)
        cand = pipe._candidate(frame, g, None)
        timed("template: whole template([c])", lambda: pipe.template([cand]), sink)
        vec = emb.embed(crop)
        timed("template: fuse of one", lambda: fuse([vec], fusion_weights([1.0], weighted=False)), sink)
        timed("TOTAL process_frame()", lambda: pipe.process_frame(rgb), sink)

    for p in list_images(args.folder, args.n):
        data = p.read_bytes()
        sink: dict[str, tuple[float, float]] = {}
        for _ in range(args.repeat):
            one_pass(data, sink)
        for k, v in sink.items():
            best.setdefault(k, []).append(v)
    rows = {k: {"wall_ms": float(np.median([w for w, _ in v])), "cpu_ms": float(np.median([c for _, c in v])),
                "n": len(v)} for k, v in best.items()}
    width = max(len(k) for k in rows)
    for k, r in rows.items():
        print(f"{k:<{width}}  wall {r['wall_ms']:7.3f} ms  cpu {r['cpu_ms']:7.3f} ms  (n {r['n']})")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
