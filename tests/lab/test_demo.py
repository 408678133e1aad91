"""`kycedge demo`, vision part (`vision_demo`) on the bundled fixtures.

The whole-flow continuation (`kycedge.lab.demo.run_flow`) is tested by its owner.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest


def test_vision_demo_decides_every_pair(repo_root: Path, faces_dir: Path) -> None:
    from kycedge.vision import default_models_dir

    models = default_models_dir()
    if not (models / "manifest.json").exists():
        pytest.skip(f"no model manifest at {models}")
    from kycedge.lab.cli import vision_demo
    from kycedge.vision import Pipeline

    out = io.StringIO()
    demo = vision_demo(Pipeline.load(models), faces_dir, out=out)
    text = out.getvalue()
    assert "obama.jpg" in text
    assert "template made" in text
    assert "genuine" in text
    assert "impostor" in text
    assert "WRONG" not in text
    assert len(demo.templates) == 5
    assert len(demo.pairs) == 10
    assert demo.all_correct
