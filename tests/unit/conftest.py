"""Fixtures for the unit firmware tests."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.smallfs import small_fs  # noqa: F401  (a small real filesystem to fill up)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short temporary directory: Unix socket paths are limited to 108 bytes."""
    d = Path(tempfile.mkdtemp(prefix="kx"))
    yield d
    for p in d.iterdir():
        p.unlink()
    d.rmdir()
