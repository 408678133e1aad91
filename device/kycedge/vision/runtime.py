"""The inference runtime shim: the only module that imports LiteRT.

Imports ``ai_edge_litert.interpreter`` (LiteRT, numpy 2, the one supported runtime) and
falls back to ``tflite_runtime.interpreter`` only where an image ships that instead (not
installed by kycedge: ADR 0011 dropped the ``legacy`` extra). The
quantisation of every input and output (scale, zero point) is read from the model
itself; :meth:`Model.run` takes and returns float32 arrays and (de)quantises at the
boundary, so callers never assume a tensor type.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from kycedge.core.errors import ModelError

__all__ = ["Model", "TensorSpec", "pixel_lut", "quiet_native_info", "runtime_name"]

_INTERPRETER_MODULES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter")


def _interpreter_class() -> tuple[str, Any]:
    errors = []
    for name in _INTERPRETER_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            errors.append(f"{name}: {e}")
            continue
        return name, module.Interpreter
    raise ModelError(
        "no TFLite runtime: expected ai_edge_litert or tflite_runtime to be importable, got "
        + "; ".join(errors),
        reason="no-runtime",
    )


#: what the native runtime prints on stderr when it creates a delegate; dropped, nothing else is
_NATIVE_INFO = (b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",)


@contextlib.contextmanager
def quiet_native_info() -> Iterator[None]:
    """Hold back the runtime's own INFO lines written straight to file descriptor 2.

    LiteRT's C++ logger prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." on
    every command that loads a model. File descriptor 2 is sent to a temporary file for the
    duration; afterwards every line that is not one of :data:`_NATIVE_INFO` is written back
    to stderr, so a real warning or error from the runtime is never lost.
    """
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to keep quiet
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held.read().splitlines(keepends=True)
                    if line.rstrip(b"\r\n") not in _NATIVE_INFO]
            if kept:
                with contextlib.suppress(OSError):
                    os.write(2, b"".join(kept))


def runtime_name() -> str:
    """The module the interpreter comes from (``ai_edge_litert.interpreter`` normally)."""
    return _interpreter_class()[0]


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor as the model declares it."""

    name: str
    index: int
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name: "float32", "int8", "uint8", ...
    scale: float  # 0.0 when the tensor is not quantised
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.dtype in ("int8", "uint8", "int16") and self.scale > 0.0


def _spec(detail: dict[str, Any]) -> TensorSpec:
    scale, zero = detail.get("quantization", (0.0, 0))
    qp = detail.get("quantization_parameters") or {}
    scales = np.asarray(qp.get("scales", []), dtype=np.float64)
    if scales.size > 1:  # per-channel quantisation on an I/O tensor: not expected
        raise ModelError(
            f"tensor {detail.get('name')!r}: expected per-tensor quantisation on model I/O, "
            f"got {scales.size} per-channel scales"
        )
    return TensorSpec(
        name=str(detail.get("name", "")),
        index=int(detail["index"]),
        shape=tuple(int(s) for s in detail["shape"]),
        dtype=np.dtype(detail["dtype"]).name,
        scale=float(scale),
        zero_point=int(zero),
    )


class Model:
    """A loaded TFLite model with float32 in, float32 out.

    ``content`` is the model bytes (already checked against the manifest by the caller).
    ``deferred`` reads the model's inputs and outputs now but allocates its tensors (and
    lets the runtime's delegate pack the weights) only at the first run: a model that most
    processes never run (the still-image fallback detector) then costs the daemon no
    resident memory. The model is parsed either way, so a file the runtime refuses still
    fails here; :meth:`prepare` allocates at once (the update self-test does).
    """

    def __init__(self, content: bytes, *, threads: int = 1, name: str = "model",
                 deferred: bool = False) -> None:
        if threads < 1:
            raise ModelError(f"{name}: expected threads >= 1, got {threads}", reason="bad-config")
        self.name = name
        self.threads = threads
        self.runtime, self._interpreter_cls = _interpreter_class()
        self._content: bytes | None = content
        interp = self._build(allocate=not deferred)
        self.inputs: tuple[TensorSpec, ...] = tuple(_spec(d) for d in interp.get_input_details())
        self.outputs: tuple[TensorSpec, ...] = tuple(_spec(d) for d in interp.get_output_details())
        self._ready: Any = None
        if deferred:
            del interp  # parsed and described; dropped until the first run
        else:
            self._ready, self._content = interp, None

    def _build(self, *, allocate: bool) -> Any:
        try:
            with quiet_native_info():
                interp = self._interpreter_cls(model_content=self._content, num_threads=self.threads)
                if allocate:
                    interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"{self.name}: the runtime refused the model: {e}") from e
        return interp

    @property
    def deferred(self) -> bool:
        """True until a deferred model's tensors are allocated (:meth:`prepare` or a run)."""
        return self._ready is None

    def prepare(self) -> None:
        """Allocate a deferred model's tensors now (a no-op once allocated)."""
        _ = self._interp

    @property
    def _interp(self) -> Any:
        if self._ready is None:
            self._ready, self._content = self._build(allocate=True), None
        return self._ready

    @property
    def batch(self) -> int:
        """The leading (batch) dimension of input 0 as currently planned."""
        return self.inputs[0].shape[0] if self.inputs and self.inputs[0].shape else 1

    def set_batch(self, n: int) -> None:
        """Re-plan a single-input model for ``n`` images per invoke (a no-op when it already is).

        Resizes the leading dimension of input 0 and re-allocates the tensors; the input
        and output specs are read again (their shapes change, their quantisation does not).
        Cheap (about 0.1 ms the first time, then ~0.01 ms), so callers may switch as needed.
        """
        if len(self.inputs) != 1:
            raise ModelError(f"{self.name}: set_batch expects a single-input model, got "
                             f"{len(self.inputs)} inputs", reason="bad-input")
        if n < 1:
            raise ModelError(f"{self.name}: expected a batch of at least 1, got {n}", reason="bad-input")
        if n == self.batch:
            return
        spec = self.inputs[0]
        try:
            self._interp.resize_tensor_input(spec.index, [n, *spec.shape[1:]])
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"{self.name}: the runtime refused a batch of {n}: {e}") from e
        self.inputs = tuple(_spec(d) for d in self._interp.get_input_details())
        self.outputs = tuple(_spec(d) for d in self._interp.get_output_details())

    def output_index(self, name: str) -> int:
        """Position in :attr:`outputs` of the output called ``name``."""
        for i, spec in enumerate(self.outputs):
            if spec.name == name:
                return i
        names = ", ".join(s.name for s in self.outputs)
        raise ModelError(f"{self.name}: expected an output named {name!r}, got {names}")

    def run(self, *arrays: npt.NDArray[Any]) -> list[npt.NDArray[np.float32]]:
        """Run once; one float array per input (shape must match), one float32 array per output."""
        if len(arrays) != len(self.inputs):
            raise ModelError(
                f"{self.name}: expected {len(self.inputs)} inputs, got {len(arrays)}",
                reason="bad-input",
            )
        for spec, arr in zip(self.inputs, arrays, strict=True):
            if tuple(arr.shape) != spec.shape:
                raise ModelError(
                    f"{self.name}: input {spec.name!r} expected shape {spec.shape}, got {arr.shape}",
                    reason="bad-input",
                )
            self._interp.set_tensor(spec.index, quantize(arr, spec))
        try:
            self._interp.invoke()
        except (ValueError, RuntimeError) as e:  # pragma: no cover - runtime failure
            raise ModelError(f"{self.name}: inference failed: {e}") from e
        return [dequantize(self._interp.get_tensor(s.index), s) for s in self.outputs]

    def run_filled(self, fill: Callable[[npt.NDArray[Any]], None]) -> list[npt.NDArray[np.float32]]:
        """Run once with ``fill`` writing the single input straight into the model's own buffer.

        ``fill`` gets a writable view of input 0 (the model's shape and dtype: already
        quantised values for a quantised input, see :func:`pixel_lut`) and must fill all of
        it; this skips the float copy, the quantised copy and ``set_tensor``'s copy of
        :meth:`run`. The view is dropped before inference (the interpreter refuses to run
        while one is alive), so ``fill`` must not keep it.
        """
        if len(self.inputs) != 1:
            raise ModelError(f"{self.name}: run_filled expects a single-input model, got "
                             f"{len(self.inputs)} inputs", reason="bad-input")
        view = self._interp.tensor(self.inputs[0].index)()
        try:
            fill(view)
        finally:
            del view
        try:
            self._interp.invoke()
        except (ValueError, RuntimeError) as e:  # pragma: no cover - runtime failure
            raise ModelError(f"{self.name}: inference failed: {e}") from e
        return [dequantize(self._interp.get_tensor(s.index), s) for s in self.outputs]


def pixel_lut(spec: TensorSpec, scale: float = 1.0, offset: float = 0.0) -> npt.NDArray[Any]:
    """The tensor value for each uint8 pixel value ``v``: ``quantize(v * scale + offset)``.

    A 256-entry table in the tensor's dtype, computed with the same float32 arithmetic
    as :func:`quantize` on ``np.float32(v) * scale + offset`` (bit-identical to it).
    """
    values = np.arange(256, dtype=np.float32)
    if scale != 1.0:
        values = values * np.float32(scale)
    if offset != 0.0:
        values = values + np.float32(offset)
    return quantize(values, spec)


def quantize(arr: npt.NDArray[Any], spec: TensorSpec) -> npt.NDArray[Any]:
    """Convert a float array to the tensor's type using the model's own scale and zero point."""
    dtype = np.dtype(spec.dtype)
    if spec.quantized:
        info = np.iinfo(dtype)
        q = np.rint(np.asarray(arr, dtype=np.float32) / spec.scale) + spec.zero_point
        out: npt.NDArray[Any] = np.clip(q, info.min, info.max).astype(dtype)
        return out
    contiguous: npt.NDArray[Any] = np.ascontiguousarray(arr, dtype=dtype)
    return contiguous


def dequantize(arr: npt.NDArray[Any], spec: TensorSpec) -> npt.NDArray[np.float32]:
    """Convert a tensor read from the model to float32 using its scale and zero point."""
    if spec.quantized:
        return ((arr.astype(np.float32) - spec.zero_point) * spec.scale).astype(np.float32)
    return np.array(arr, dtype=np.float32)


def shapes(specs: Sequence[TensorSpec]) -> list[tuple[int, ...]]:
    return [s.shape for s in specs]
