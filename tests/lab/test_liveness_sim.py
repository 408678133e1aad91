"""The synthetic bona fide subject, seen by the shipped detector and FaceMesh."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def seen(faces_dir: Path):  # type: ignore[no-untyped-def]
    from kycedge.vision import Pipeline, default_models_dir

    models = default_models_dir()
    if not (models / "manifest.json").exists():
        pytest.skip(f"no model manifest at {models}")
    from kycedge.lab.liveness_sim.build import portrait_mesh
    from kycedge.vision.decode import decode_image
    from kycedge.vision.liveness.observe import load_observer

    pipe = Pipeline.load(models)
    observer = load_observer(pipe.manifest)
    pm = portrait_mesh(pipe, observer, decode_image((faces_dir / "obama2.jpg").read_bytes()))
    assert pm is not None
    return pipe, observer, pm


def _open_and_closed_ear(pipe, observer, perf) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """The eye aspect ratio FaceMesh reads on the synthetic head with eyes open, then shut."""
    from kycedge.lab.liveness_sim.drive import observe

    ears = []
    for b in (0.0, 1.0):
        _, o, _ = observe(pipe, observer, perf.render(replace(perf.base, blink=b)), 0.0)
        assert o is not None
        ears.append(o.ear)
    return ears[0], ears[1]


def test_the_customer_faces_the_camera_even_from_a_turned_portrait(seen) -> None:  # type: ignore[no-untyped-def]
    from kycedge.lab.liveness_sim.build import subject
    from kycedge.lab.liveness_sim.drive import observe
    from kycedge.vision.liveness.geometry import yaw_deg

    pipe, observer, (portrait, mesh) = seen
    assert abs(yaw_deg(mesh)) > 12.0  # the portrait itself is turned
    for seed in range(3):
        perf = subject(portrait, mesh, np.random.default_rng(seed))
        _, o, _ = observe(pipe, observer, perf.render(perf.base), 0.0)
        assert o is not None
        assert abs(o.yaw_deg) < 10.0, o


def test_the_synthetic_blink_stays_as_deep_as_the_rule_needs(seen, faces_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """FaceMesh reads the closed synthetic lid well below the challenge's 0.85 of the open eye
    for the fixture heads (median over 5 portraits x 2 heads; about 0.72 today). Real short
    blinks in pad-video-dev read 0.53-0.84, median 0.66, and the synthetic blink on LFW
    identities 41-80 a median 0.77 (docs/liveness.md): this fails if it gets shallower."""
    from kycedge.lab.liveness_sim.build import portrait_mesh, subject
    from kycedge.vision.decode import decode_image
    from kycedge.vision.liveness.challenge import ChallengeConfig

    pipe, observer, _ = seen
    ratios = []
    for path in sorted(faces_dir.glob("*.*g")):
        pm = portrait_mesh(pipe, observer, decode_image(path.read_bytes()))
        assert pm is not None, path
        for seed in range(2):
            perf = subject(pm[0], pm[1], np.random.default_rng(seed))
            opened, closed = _open_and_closed_ear(pipe, observer, perf)
            ratios.append(closed / opened)
    assert len(ratios) == 10
    assert float(np.median(ratios)) < ChallengeConfig().blink_ratio - 0.05, ratios


def test_a_blink_narrows_the_eyes_facemesh_sees(seen) -> None:  # type: ignore[no-untyped-def]
    from kycedge.lab.liveness_sim.build import subject

    pipe, observer, (portrait, mesh) = seen
    perf = subject(portrait, mesh, np.random.default_rng(0))
    opened, closed = _open_and_closed_ear(pipe, observer, perf)
    assert closed < 0.95 * opened
