"""runtime: quantisation read from the model; float in, float out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from kycedge.core.errors import ModelError
from kycedge.vision.models import load_manifest
from kycedge.vision.runtime import Model, TensorSpec, dequantize, quantize, runtime_name


def test_runtime_is_litert() -> None:
    assert runtime_name() == "ai_edge_litert.interpreter"


def test_quantize_round_trip_uses_spec() -> None:
    spec = TensorSpec("x", 0, (4,), "int8", 0.5, -3)
    x = np.array([-70.0, 0.0, 1.0, 60.0], dtype=np.float32)
    q = quantize(x, spec)
    assert q.dtype == np.int8
    assert q.tolist() == [-128, -3, -1, 117]  # clipped at the int8 range
    assert dequantize(q, spec).tolist() == [-62.5, 0.0, 1.0, 60.0]
    f = TensorSpec("y", 0, (4,), "float32", 0.0, 0)
    assert not f.quantized
    assert quantize(x, f).dtype == np.float32


def test_garbage_model_is_model_error() -> None:
    with pytest.raises(ModelError):
        Model(b"not a flatbuffer" * 10, name="junk")
    with pytest.raises(ModelError):
        Model(b"", threads=0)


def test_every_shipped_model_loads_and_runs(models_dir: Path) -> None:
    manifest = load_manifest(models_dir)
    roles = [manifest.role(r) for r in ("detector", "landmarks", "embedder")]
    for entry in roles:
        if entry is None:
            continue
        model = Model(manifest.read_checked(entry), threads=1, name=entry.name)
        zeros = [np.zeros(s.shape, dtype=np.float32) for s in model.inputs]
        outs = model.run(*zeros)
        assert len(outs) == len(model.outputs)
        assert all(o.dtype == np.float32 and np.all(np.isfinite(o)) for o in outs)
        with pytest.raises(ModelError):
            model.run()


def test_falls_back_to_tflite_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import sys
    import types

    from kycedge.vision import runtime

    real = importlib.import_module

    def no_litert(name: str, *a: object, **k: object) -> object:
        if name.startswith("ai_edge_litert"):
            raise ImportError("ai_edge_litert not installed (simulated)")
        return real(name, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(runtime.importlib, "import_module", no_litert)
    monkeypatch.delitem(sys.modules, "tflite_runtime.interpreter", raising=False)
    with pytest.raises(ModelError) as e:
        runtime.runtime_name()
    assert e.value.reason == "no-runtime"
    assert "tflite_runtime" in e.value.message

    from ai_edge_litert.interpreter import Interpreter

    fake = types.ModuleType("tflite_runtime.interpreter")
    fake.Interpreter = Interpreter  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tflite_runtime", types.ModuleType("tflite_runtime"))
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", fake)
    assert runtime.runtime_name() == "tflite_runtime.interpreter"


def test_run_filled_equals_run(models_dir: Path) -> None:
    # writing the input straight into the tensor (via a pixel table when quantised) gives
    # exactly what run() gives on the float input
    from kycedge.vision.runtime import pixel_lut

    manifest = load_manifest(models_dir)
    rng = np.random.default_rng(2)
    for role in ("detector", "landmarks", "embedder"):
        entry = manifest.role(role)
        if entry is None:
            continue
        model = Model(manifest.read_checked(entry), threads=1, name=entry.name)
        spec = model.inputs[0]
        pixels = rng.integers(0, 256, size=spec.shape, dtype=np.uint8)
        lut = pixel_lut(spec, 1.0 / 255.0, -0.5)
        expected = model.run(pixels.astype(np.float32) * np.float32(1.0 / 255.0) + np.float32(-0.5))

        def fill(buf: np.ndarray, lut: np.ndarray = lut, pixels: np.ndarray = pixels) -> None:
            np.take(lut, pixels, out=buf)

        got = model.run_filled(fill)
        assert all(np.array_equal(e, g) for e, g in zip(expected, got, strict=True))
        assert model.run_filled(fill)[0].shape == expected[0].shape  # the view was released


def test_deferred_model_describes_now_allocates_at_first_run(models_dir: Path) -> None:
    # the still-image fallback detector is built deferred: same specs and outputs as an
    # allocated model, no tensors (no resident arena) until a run or prepare()
    manifest = load_manifest(models_dir)
    entry = manifest.role("fallback_detector")
    assert entry is not None
    content = manifest.read_checked(entry)
    eager = Model(content, name=entry.name)
    lazy = Model(content, name=entry.name, deferred=True)
    assert not eager.deferred
    assert lazy.deferred
    assert (lazy.inputs, lazy.outputs) == (eager.inputs, eager.outputs)
    x = np.random.default_rng(5).random(eager.inputs[0].shape).astype(np.float32) * 255
    expected = eager.run(x)
    assert lazy.deferred  # describing and comparing specs allocated nothing
    got = lazy.run(x)
    assert not lazy.deferred
    assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))
    again = Model(content, name=entry.name, deferred=True)
    again.prepare()
    assert not again.deferred
    with pytest.raises(ModelError):  # parsed at once: a file the runtime refuses fails here
        Model(b"not a flatbuffer" * 10, name="junk", deferred=True)


def test_deferred_model_costs_no_resident_memory_until_run(models_dir: Path) -> None:
    # measured in a fresh interpreter process so that earlier tests' peaks do not hide it
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        from pathlib import Path
        import numpy as np
        from kycedge.vision.models import load_manifest
        from kycedge.vision.runtime import Model
        def hwm():
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        m = load_manifest(Path({str(models_dir)!r}))
        e = m.role("fallback_detector")
        warm = Model(m.read_checked(m.role("detector")), name="detector")  # the runtime's own libraries
        warm.run(*[np.zeros(s.shape, np.float32) for s in warm.inputs])
        base = hwm()
        lazy = Model(m.read_checked(e), name=e.name, deferred=True)
        described = hwm()
        lazy.prepare()
        lazy.run(*[np.zeros(s.shape, np.float32) for s in lazy.inputs])
        print(described - base, hwm() - base)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    described_kb, ran_kb = (int(v) for v in out.stdout.split())
    assert ran_kb > 4 * 1024  # YuNet-320's arena and packed weights: several MB once it runs
    assert described_kb < ran_kb / 3  # described but deferred: a small part of that
