"""On-device vision: image bytes or frames to L2-normalised face templates.

Public API::

    from kycedge.vision import Pipeline, PipelineResult
    pipe = Pipeline.load(models_dir, threads=1)
    res = pipe.process_image_bytes(data)      # or pipe.process_frame(rgb)
    pipe.model_id, pipe.model_version, pipe.threshold, pipe.far
    from kycedge.protocol.match import cosine, decide

Importing this package does not import LiteRT or Pillow; they load with the pipeline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Pipeline", "PipelineResult", "VisionConfig", "default_models_dir"]

if TYPE_CHECKING:
    from pathlib import Path

    from kycedge.vision.pipeline import Pipeline, PipelineResult, VisionConfig


def default_models_dir() -> Path:
    """The shipped models (``$KYCEDGE_MODELS`` if set; see :mod:`kycedge.core.paths`)."""
    from kycedge.core.paths import data_dir

    return data_dir("models")


def __getattr__(name: str) -> Any:
    if name in ("Pipeline", "PipelineResult", "VisionConfig"):
        from kycedge.vision import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'kycedge.vision' has no attribute {name!r}")
