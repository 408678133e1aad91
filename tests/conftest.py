"""Shared fixtures: paths to the repo's fixtures and to ../shared/data; the real broker (support.broker)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.broker import broker, pki  # noqa: F401  (real-Mosquitto fixtures for every test package)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures" / "faces"
SHARED_DATA = Path(os.environ.get("KYCEDGE_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    """The project's own fixture faces (public domain, see fixtures/faces/PROVENANCE.md)."""
    return FIXTURES


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (evaluation photos, read by path); skips when it is absent."""
    if not (SHARED_DATA / "README.md").exists():
        pytest.skip(f"evaluation data not found at {SHARED_DATA} (set KYCEDGE_SHARED_DATA)")
    return SHARED_DATA
