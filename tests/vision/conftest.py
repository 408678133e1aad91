"""Vision fixtures: the shipped models (real), fixture faces, in-memory image builders."""

from __future__ import annotations

from pathlib import Path

import pytest
from kycedge.vision import default_models_dir

MODELS = default_models_dir()


@pytest.fixture(scope="session")
def models_dir() -> Path:
    if not (MODELS / "manifest.json").exists():
        pytest.skip(f"no model manifest at {MODELS} (models are built by tools/convert)")
    return MODELS


@pytest.fixture(scope="session")
def pipe(models_dir: Path):  # type: ignore[no-untyped-def]
    from kycedge.vision import Pipeline

    return Pipeline.load(models_dir, threads=1)

