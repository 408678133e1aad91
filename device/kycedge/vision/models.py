"""The model manifest: loading, validation and sha256 checks.

``models/manifest.json`` has three sections: ``models`` (owned by the conversion tool:
one entry per ``.tflite`` file with its sha256, source, licence, tensors, quantisation),
``pipeline`` (which model plays which role and its settings) and ``matching`` (the
cosine threshold with the false accept rate and the data it was calibrated on). Every
model file is read once, its sha256 checked against the manifest, and the checked bytes
are what the runtime loads (no second read between check and use).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kycedge.core.errors import ModelError

__all__ = ["MANIFEST_NAME", "Manifest", "ModelFile", "load_manifest"]

MANIFEST_NAME = "manifest.json"
MAX_MANIFEST_BYTES = 1 << 20
MAX_MODEL_BYTES = 64 << 20
# the pipeline roles a bundle ships (fallback_detector: stills only, ADR 0012)
ROLES = ("detector", "landmarks", "embedder", "fallback_detector")


@dataclass(frozen=True)
class ModelFile:
    name: str
    id: str
    file: str
    sha256: str
    version: str
    raw: Mapping[str, Any]


@dataclass(frozen=True)
class Manifest:
    path: Path
    models: Mapping[str, ModelFile]
    pipeline: Mapping[str, Any]
    matching: Mapping[str, Any]
    raw: Mapping[str, Any]

    def role(self, role: str) -> ModelFile | None:
        """The entry playing ``role`` (pipeline section), None when the role is unused."""
        name = self.pipeline.get(role)
        if name in (None, "", "none"):
            return None
        if not isinstance(name, str) or name not in self.models:
            raise ModelError(
                f"{self.path}: pipeline.{role}: expected one of {sorted(self.models)}, got {name!r}"
            )
        return self.models[name]

    def read_checked(self, entry: ModelFile) -> bytes:
        """The model file's bytes, after checking its size and sha256 against the manifest."""
        path = self.path.parent / entry.file
        try:
            size = path.stat().st_size
            if size > MAX_MODEL_BYTES:
                raise ModelError(f"{path}: expected at most {MAX_MODEL_BYTES} bytes, got {size}")
            data = path.read_bytes()
        except OSError as e:
            raise ModelError(f"{path}: cannot read model {entry.name!r}: {e.strerror or e}",
                             reason="model-missing") from e
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry.sha256:
            raise ModelError(
                f"{path}: sha256 mismatch for {entry.name!r}: manifest says {entry.sha256}, "
                f"file is {digest}",
                reason="model-tampered",
            )
        return data

    @property
    def identity(self) -> tuple[str, str]:
        """``(model_id, model_version)`` of the embedder: the name receipts and status carry."""
        entry = self.role("embedder")
        if entry is None:
            raise ModelError(f"{self.path}: pipeline.embedder: expected a model, got none")
        return (str(self.pipeline.get("model_id", entry.id)),
                str(self.pipeline.get("model_version", entry.version)))

    @property
    def threshold(self) -> float:
        t = self.matching.get("threshold")
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) \
                or not -1.0 <= t <= 1.0:
            raise ModelError(f"{self.path}: matching.threshold: expected a cosine in [-1, 1], got {t!r}")
        return float(t)

    @property
    def far(self) -> float:
        f = self.matching.get("far")
        if isinstance(f, bool) or not isinstance(f, int | float) or not 0.0 < f < 1.0:
            raise ModelError(f"{self.path}: matching.far: expected a rate in (0, 1), got {f!r}")
        return float(f)


def _entries(path: Path, models: Any) -> dict[str, ModelFile]:
    items: list[tuple[str, Any]]
    if isinstance(models, Mapping):
        items = list(models.items())
    elif isinstance(models, list):
        items = [(str(m.get("name", "")) if isinstance(m, Mapping) else "", m) for m in models]
    else:
        raise ModelError(f"{path}: models: expected an object or array, got {type(models).__name__}")
    out: dict[str, ModelFile] = {}
    for name, m in items:
        if not isinstance(m, Mapping):
            raise ModelError(f"{path}: models.{name}: expected an object, got {type(m).__name__}")
        file = m.get("file", m.get("path"))
        sha = m.get("sha256")
        if not isinstance(file, str) or not file or "/" in file or "\\" in file or file.startswith("."):
            raise ModelError(f"{path}: models.{name}.file: expected a plain file name, got {file!r}")
        if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ModelError(f"{path}: models.{name}.sha256: expected 64 lowercase hex digits, got {sha!r}")
        version = m.get("version")
        model_id = m.get("id", name)
        out[name] = ModelFile(name=name, id=str(model_id) if model_id else name, file=file, sha256=sha,
                               version=str(version) if version else sha[:16], raw=m)
    return out


def load_manifest(models_dir: Path) -> Manifest:
    """Read and validate ``models_dir/manifest.json`` (files are checked when read)."""
    path = Path(models_dir) / MANIFEST_NAME
    try:
        raw_bytes = path.read_bytes()
    except OSError as e:
        raise ModelError(f"{path}: cannot read the model manifest: {e.strerror or e}",
                         reason="model-missing") from e
    if len(raw_bytes) > MAX_MANIFEST_BYTES:
        raise ModelError(f"{path}: expected at most {MAX_MANIFEST_BYTES} bytes, got {len(raw_bytes)}")
    try:
        raw = json.loads(raw_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{path}: expected UTF-8 JSON, got: {e}") from e
    if not isinstance(raw, dict):
        raise ModelError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    pipeline = raw.get("pipeline", {})
    matching = raw.get("matching", {})
    if not isinstance(pipeline, dict) or not isinstance(matching, dict):
        raise ModelError(f"{path}: expected objects for 'pipeline' and 'matching'")
    return Manifest(path=path, models=_entries(path, raw.get("models", {})), pipeline=pipeline,
                    matching=matching, raw=raw)
