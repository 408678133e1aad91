"""tools/fit_mesh_convention.py: the symmetric part, and the shipped offsets reproduced from data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from kycedge.vision.align import FACEMESH_OFFSETS_PX
from support.tools import load_tool


@pytest.fixture(scope="module")
def fit():  # type: ignore[no-untyped-def]
    return load_tool("fit_mesh_convention.py")


def test_symmetric_part(fit) -> None:  # type: ignore[no-untyped-def]
    sym = np.array([[-1.0, -2.0], [1.0, -2.0], [0.0, -3.0], [0.5, 1.0], [-0.5, 1.0]])
    assert np.allclose(fit.symmetric(sym), sym)
    shifted = sym + np.array([0.7, 0.0])  # a sideways shift of every point is dropped
    assert np.allclose(fit.symmetric(shifted), sym)
    lopsided = sym.copy()
    lopsided[0] += [0.4, 0.2]  # one eye off: shared between the two eyes
    out = fit.symmetric(lopsided)
    assert np.allclose(out[:, 0].sum(), 0.0)
    assert np.isclose(out[0, 1], out[1, 1])


def test_refuses_lfw(fit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit, match="evaluation set"):
        fit.main([str(tmp_path / "lfw-dev")])


@pytest.mark.shared_data
@pytest.mark.slow
def test_shipped_offsets_come_from_faces_small_and_fixtures(  # type: ignore[no-untyped-def]
        fit, shared_data: Path, faces_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "fit.json"
    assert fit.main([str(shared_data / "faces-small"), str(faces_dir), "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    assert got["faces"] >= 140
    assert np.allclose(got["offsets_px"], FACEMESH_OFFSETS_PX, atol=0.011)
