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


def test_a_head_brought_close_stays_opaque_and_a_face(seen) -> None:  # type: ignore[no-untyped-def]
    """Closer than the texture's resolution (here 0.6 x the distance, about 1.7 x the size:
    what "move closer" does), the splat must not let the background show through the face in a
    grid of holes (FaceMesh then saw no face, and SFace another person)."""
    from kycedge.lab.liveness_sim.build import FOCAL_PX
    from kycedge.lab.liveness_sim.drive import observe
    from kycedge.lab.liveness_sim.head import Pose, build_head
    from kycedge.protocol.match import cosine

    pipe, observer, (portrait, mesh) = seen
    heads = [build_head(portrait, mesh, background=np.full((300, 400, 3), v, np.uint8), focal_px=FOCAL_PX,
                        supersample=1.6) for v in (0, 255)]
    near = Pose(distance_mm=330.0)
    dark, light = (h.render(near) for h in heads)
    res = pipe.process_frame(dark)
    assert res.box is not None
    x0, y0, x1, y1 = (round(v) for v in res.box)
    cx, cy, qx, qy = (x0 + x1) // 2, (y0 + y1) // 2, (x1 - x0) // 4, (y1 - y0) // 4
    centre = (slice(max(cy - qy, 0), cy + qy), slice(max(cx - qx, 0), cx + qx))
    seen_through = np.any(dark[centre] != light[centre], axis=2)  # the background shows there
    assert seen_through.mean() < 0.001, seen_through.mean()
    far = observe(pipe, observer, heads[0].render(Pose(distance_mm=550.0)), 0.0)[1]
    _, o, _ = observe(pipe, observer, dark, 0.0)
    assert o is not None
    assert far is not None
    assert o.iod_px > 1.5 * far.iod_px
    base = pipe.process_frame(heads[0].render(Pose(distance_mm=550.0)))
    assert res.ok, res.reason
    assert base.ok, base.reason
    assert cosine(base.template, res.template) >= pipe.threshold
    assert heads[0].footprint_px(near.distance_mm - 100.0) > 1  # the points were apart
