"""ONNX -> SavedModel (onnx2tf) -> TFLite with a signature -> ai-edge-quantizer; LiteRT helpers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# onnx2tf loads this file from its working directory and downloads it when absent; it
# only uses it as sample input for its own consistency checks. We write it ourselves
# (real aligned faces, resized) so onnx2tf never touches the network.
ONNX2TF_SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"


def write_onnx2tf_sample(workdir: Path, faces_bgr: Sequence[np.ndarray]) -> None:
    import cv2

    imgs = [cv2.resize(f, (128, 128), interpolation=cv2.INTER_AREA)[:, :, ::-1] for f in faces_bgr[:20]]
    while len(imgs) < 20:
        imgs.append(imgs[len(imgs) % max(1, len(faces_bgr))])
    arr = (np.stack(imgs).astype(np.float32) / 255.0)
    workdir.mkdir(parents=True, exist_ok=True)
    np.save(workdir / ONNX2TF_SAMPLE, arr)


def onnx_to_saved_model(onnx_path: Path, workdir: Path, name: str) -> Path:
    """Run onnx2tf on a copy of onnx_path (onnx2tf rewrites its input) in workdir.

    Runs in a subprocess so that onnx2tf's sys.exit() on errors, its global TF state and
    its memory stay out of the driver. Returns the SavedModel directory.
    """
    if not (workdir / ONNX2TF_SAMPLE).exists():
        raise FileNotFoundError(f"{workdir / ONNX2TF_SAMPLE}: write it with write_onnx2tf_sample first")
    copy = workdir / f"{name}.onnx"
    shutil.copyfile(onnx_path, copy)
    out = workdir / f"{name}_saved_model"
    shutil.rmtree(out, ignore_errors=True)
    kwargs = {
        "input_onnx_file_path": copy.name,
        "output_folder_path": out.name,
        "output_signaturedefs": True,
        "copy_onnx_input_output_names_to_tflite": True,
        "non_verbose": True,
    }
    code = f"import json, onnx2tf; onnx2tf.convert(**json.loads({json.dumps(json.dumps(kwargs))}))"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="-1", TF_ENABLE_ONEDNN_OPTS="0")
    log = workdir / f"{name}_onnx2tf.log"
    with log.open("w") as f:
        r = subprocess.run([sys.executable, "-c", code], cwd=workdir, stdout=f, stderr=subprocess.STDOUT,
                           env=env, check=False)
    if r.returncode != 0 or not (out / "saved_model.pb").exists():
        raise RuntimeError(f"onnx2tf failed on {onnx_path.name} (exit {r.returncode}); see {log}")
    return out


def saved_model_to_tflite(saved_model: Path, float16: bool = False) -> bytes:
    """TFLite with the SavedModel's serving_default signature (needed by ai-edge-quantizer);
    float32, or float16 weights (dequantised at load, float32 compute) when float16."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    if float16:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    return bytes(conv.convert())


def op_scopes(float_tflite: Path) -> list[tuple[str, str]]:
    """(op name, ai-edge-quantizer scope) of every op in execution order; the scope is the
    op's output tensor names joined by ';' plus a trailing ';' (ai-edge-quantizer's
    get_op_scope), so '^' + re.escape(scope) + '$' selects exactly one op."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(float_tflite))
    out = []
    for op in it._get_ops_details():  # private API: LiteRT has no public op listing
        names = [it._get_tensor_details(t, 0)["name"] for t in op["outputs"] if t >= 0]
        out.append((str(op["op_name"]), ";".join(names) + ";"))
    return out


def quantise_static_int8(float_tflite: Path, calibration: list[dict[str, np.ndarray]],
                         pixel_input: str | None = None, signature: str = "serving_default",
                         float_scopes: Sequence[str] = ()) -> bytes:
    """ai-edge-quantizer static int8 (int8 weights per channel, int8 activations, min/max).

    pixel_input: name of an input tensor that carries 0..255 pixels; its range is pinned to
    [0, 255] so the int8 input is exactly pixel - 128 (scale 1, zero point -128).
    float_scopes: op scopes (see op_scopes) left unquantised (float weights, float
    activations, QUANTIZE/DEQUANTIZE at their edges); everything else is static int8.
    """
    import re

    from ai_edge_quantizer import qtyping, quantizer, recipe
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    qt = quantizer.Quantizer(str(float_tflite))
    qt.load_quantization_recipe(recipe.static_wi8_ai8())
    if float_scopes:  # later recipe entries win in ai-edge-quantizer
        regex = "^(" + "|".join(re.escape(s) for s in float_scopes) + ")$"
        qt.update_quantization_recipe(regex, qtyping.TFLOperationName.ALL_SUPPORTED,
                                      algorithm_key=AlgorithmName.NO_QUANTIZE)
    calib = qt.calibrate({signature: calibration}, num_threads=2)
    if pixel_input is not None:
        if pixel_input not in calib:
            raise KeyError(f"input tensor {pixel_input!r} not among calibrated tensors")
        qsv = calib[pixel_input]
        calib[pixel_input] = {"min": np.zeros_like(qsv["min"]), "max": np.full_like(qsv["max"], 255.0)}
    res = qt.quantize(calib, enable_progress_report=False)
    return bytes(res.quantized_model)


def quantise_weight_only_int8(float_tflite: Path) -> bytes:
    from ai_edge_quantizer import quantizer, recipe

    qt = quantizer.Quantizer(str(float_tflite))
    qt.load_quantization_recipe(recipe.weight_only_wi8_afp32())
    res = qt.quantize(enable_progress_report=False)
    return bytes(res.quantized_model)


class Runner:
    """Minimal LiteRT runner: quantises float inputs and dequantises outputs per the model."""

    def __init__(self, model: Path | bytes, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        if isinstance(model, Path):
            self.it = Interpreter(model_path=str(model), num_threads=threads)
        else:
            self.it = Interpreter(model_content=model, num_threads=threads)
        self.it.allocate_tensors()
        self.inputs = self.it.get_input_details()
        self.outputs = self.it.get_output_details()

    def set(self, *arrays: np.ndarray) -> None:
        for d, a in zip(self.inputs, arrays, strict=True):
            scale, zp = d["quantization"]
            if d["dtype"] in (np.int8, np.uint8) and scale:
                info = np.iinfo(d["dtype"])
                a = np.clip(np.round(a / scale + zp), info.min, info.max)
            self.it.set_tensor(d["index"], np.ascontiguousarray(a, dtype=d["dtype"]))

    def get(self) -> list[np.ndarray]:
        outs = []
        for d in self.outputs:
            o = self.it.get_tensor(d["index"])
            scale, zp = d["quantization"]
            if d["dtype"] in (np.int8, np.uint8) and scale:
                o = (o.astype(np.float32) - zp) * scale
            outs.append(np.array(o, dtype=np.float32))
        return outs

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        self.set(*arrays)
        self.it.invoke()
        return self.get()

    def latency_ms(self, *arrays: np.ndarray, runs: int = 200, warmup: int = 10) -> dict[str, float]:
        self.set(*arrays)
        for _ in range(warmup):
            self.it.invoke()
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            self.it.invoke()
            times.append((time.perf_counter() - t0) * 1000.0)
        t = np.array(times)
        return {"median": round(float(np.median(t)), 3), "p95": round(float(np.percentile(t, 95)), 3),
                "runs": runs}


def io_spec(model: Path) -> dict[str, list[dict[str, object]]]:
    r = Runner(model)

    def one(d: dict) -> dict[str, object]:
        scale, zp = d["quantization"]
        spec: dict[str, object] = {"name": d["name"], "shape": [int(x) for x in d["shape"]],
                                   "dtype": np.dtype(d["dtype"]).name}
        if scale:
            spec["quantization"] = {"scale": float(scale), "zero_point": int(zp)}
        return spec

    return {"inputs": [one(d) for d in r.inputs], "outputs": [one(d) for d in r.outputs]}
