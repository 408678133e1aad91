"""Self-test of a staged model set on the golden images shipped inside the bundle.

The staged set is loaded exactly as the daemon would load it
(:meth:`kycedge.vision.Pipeline.load`, which checks every model's sha256), each golden
image is embedded, and:

- every embedding must match the bundle's expected embedding within the tolerance
  (``1 - cosine <= tolerance``, tolerance capped by the unit's config);
- the pipeline must report the model id, version and threshold the bundle declares;
- the genuine pair must score at or above the threshold, the impostor pair below it.

Anything else is a :class:`~kycedge.protocol.update_errors.SelfTestError` naming the image, the
expected and the actual value.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kycedge.core.errors import KycEdgeError
from kycedge.protocol.bundle import BundleManifest, golden_pair_scores
from kycedge.protocol.update_errors import SelfTestError

__all__ = ["SelfTestReport", "run_selftest"]


@dataclass(frozen=True)
class SelfTestReport:
    model_id: str
    model_version: str
    threshold: float
    drift: dict[str, float]      # name -> 1 - cosine(expected, actual)
    genuine_score: float
    impostor_score: float


def run_selftest(set_dir: Path, manifest: BundleManifest, *, tolerance_cap: float = 0.05,
                 load: Callable[[Path], Any] | None = None) -> SelfTestReport:
    """Load ``set_dir`` with the vision pipeline and check it against ``manifest.selftest``."""
    from kycedge.protocol.match import cosine

    if load is None:
        from kycedge.vision import Pipeline

        def load(p: Path) -> Any:
            return Pipeline.load(p)

    spec = manifest.selftest
    tolerance = min(spec.tolerance, tolerance_cap)
    try:
        pipe = load(set_dir)
        fallback = getattr(pipe, "fallback", None)
        if fallback is not None:  # allocated at first use in the daemon; here, before the switch
            fallback.model.prepare()
    except KycEdgeError as e:
        raise SelfTestError(f"staged models failed to load: {e.reason}: {e.message}") from e
    m = manifest.matching
    if (pipe.model_id, pipe.model_version) != (m.model_id, m.model_version):
        raise SelfTestError(f"pipeline model: expected {m.model_id}@{m.model_version} (bundle.json), "
                            f"got {pipe.model_id}@{pipe.model_version}")
    if not math.isclose(pipe.threshold, m.threshold, abs_tol=1e-9):
        raise SelfTestError(f"threshold: expected {m.threshold} (bundle.json), pipeline has {pipe.threshold}")

    templates: dict[str, Any] = {}
    drift: dict[str, float] = {}
    for img in spec.images:
        try:
            data = (set_dir / img.file).read_bytes()
        except OSError as e:
            raise SelfTestError(f"golden image {img.file}: cannot read it: {e}") from e
        res = pipe.process_image_bytes(data)
        if not res.ok or res.template is None:
            raise SelfTestError(f"golden image {img.name}: expected a template, got {res.reason}: "
                                f"{res.message}")
        if len(res.template) != len(img.embedding):
            raise SelfTestError(f"golden image {img.name}: expected a {len(img.embedding)}-d embedding, "
                                f"got {len(res.template)}-d")
        d = 1.0 - cosine(res.template, img.embedding)
        if d > tolerance:
            raise SelfTestError(f"golden image {img.name}: expected 1 - cosine to the bundle's "
                                f"embedding <= {tolerance}, got {d:.4f}")
        templates[img.name] = res.template
        drift[img.name] = d
    genuine, impostor, problem = golden_pair_scores(spec, templates, m.threshold)
    if problem:
        raise SelfTestError(problem)
    return SelfTestReport(m.model_id, m.model_version, m.threshold, drift, genuine, impostor)
