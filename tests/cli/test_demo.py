"""`kycedge demo` (vision part) on the bundled fixtures."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from kycedge.cli import main


def test_demo_runs_and_decides_every_pair(repo_root: Path, faces_dir: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    models = repo_root / "models"
    if not (models / "manifest.json").exists():
        pytest.skip(f"no model manifest at {models}")
    assert main(["demo", "--models", str(models)]) == 0
    out = capsys.readouterr().out
    assert "obama.jpg" in out
    assert "template made" in out
    assert "genuine" in out
    assert "impostor" in out
    assert "WRONG" not in out

    from kycedge.cli.demo import vision_demo
    from kycedge.vision import Pipeline

    demo = vision_demo(Pipeline.load(models), faces_dir, out=io.StringIO())
    assert len(demo.templates) == 5
    assert len(demo.pairs) == 10
    assert demo.all_correct
