"""core.fsutil.atomic_write: the one durable write."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from kycedge.core.fsutil import atomic_write


def test_atomic_write_mode_ignores_umask_and_replaces(tmp_path: Path) -> None:
    p = tmp_path / "state.json"
    old = os.umask(0)
    try:
        atomic_write(p, b"one")
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
        atomic_write(p, b"two", mode=0o644)
        assert stat.S_IMODE(p.stat().st_mode) == 0o644
    finally:
        os.umask(old)
    assert p.read_bytes() == b"two"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["state.json"]


def test_atomic_write_failure_leaves_old_content_and_no_temp(tmp_path: Path) -> None:
    p = tmp_path / "f"
    atomic_write(p, b"old")
    with pytest.raises(TypeError):
        atomic_write(p, "not bytes")  # type: ignore[arg-type]
    assert p.read_bytes() == b"old"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["f"]
