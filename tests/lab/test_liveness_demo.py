"""The liveness demo end to end: real models, session, sealer and receiver; simulated camera.

This is the handful of synthetic sessions CI runs (one genuine customer, one printed photo,
one replay); the 150-portrait evaluation is ``tools/eval_liveness.py``, run by hand.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest


def test_genuine_passes_print_and_replay_are_refused_old_unit_rejected(faces_dir: Path) -> None:
    from kycedge.vision import default_models_dir

    models = default_models_dir()
    if not (models / "manifest.json").exists():
        pytest.skip(f"no model manifest at {models}")
    from kycedge.lab.liveness_demo import liveness_demo
    from kycedge.vision import Pipeline

    out = io.StringIO()
    demo = liveness_demo(Pipeline.load(models), faces_dir, out=out)
    text = out.getvalue()
    assert demo.outcomes["genuine"]["result"] == "sealed", text
    assert demo.outcomes["genuine"]["receipt"] == "match", text
    assert len(demo.outcomes["genuine"]["prompts"]) == 3
    assert all(p.startswith("liveness-") for p in demo.outcomes["genuine"]["prompts"])
    assert demo.outcomes["print"]["result"] == "liveness-failed", text
    assert demo.outcomes["replay"]["result"] == "liveness-failed", text
    assert demo.outcomes["no-challenge"] == {"receipt": "liveness-not-passed", "status": "rejected"}
    assert demo.sealed == 1  # nothing of a refused capture was sealed
    assert demo.ok
