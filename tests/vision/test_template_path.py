"""The session's template path on the shipped models: guide per frame, candidates, one template."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from kycedge.protocol.match import cosine
from kycedge.vision.template import Candidate
from PIL import Image


def rgb_of(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.ascontiguousarray(np.asarray(im.convert("RGB")))


@pytest.fixture(scope="module")
def portraits(faces_dir: Path) -> list[np.ndarray]:
    return [rgb_of(p) for p in sorted(faces_dir.glob("*.*g"))]


def test_guide_gates_without_embedding(pipe, portraits: list[np.ndarray]) -> None:  # type: ignore[no-untyped-def]
    g = pipe.guide(portraits[0])
    assert g.ok
    assert g.reason == "ok"
    assert not hasattr(g, "template")
    assert "embed" not in g.ms
    assert set(g.ms) == {"detect", "align", "total"}
    assert g.score > 0
    assert g.face is not None
    blank = pipe.guide(np.full((240, 320, 3), 128, np.uint8))
    assert not blank.ok
    assert blank.reason == "no-face"
    assert blank.face is None
    bad = pipe.guide(np.zeros((10, 10), np.uint8))
    assert bad.reason == "bad-frame"


def test_single_image_is_the_template_of_one_candidate(pipe, portraits: list[np.ndarray]) -> None:  # type: ignore[no-untyped-def]
    rgb = portraits[0]
    g = pipe.guide(rgb)
    c = pipe.candidate(rgb, g)
    assert isinstance(c, Candidate)
    assert c.crop.shape == (112, 112, 3)
    assert c.score == g.score
    t = pipe.template([c])
    res = pipe.process_frame(rgb)
    assert res.ok
    assert np.array_equal(res.template, t)  # embed / evaluation / ID photo = a session of one frame


def test_fusion_of_frames_of_one_person(pipe, portraits: list[np.ndarray]) -> None:  # type: ignore[no-untyped-def]
    rgb = portraits[0]
    brighter = np.clip(rgb.astype(np.int16) + 12, 0, 255).astype(np.uint8)
    frames = [rgb, np.ascontiguousarray(rgb[:, ::-1]), brighter]
    cands = []
    for f in frames:
        g = pipe.guide(f)
        assert g.ok
        c = pipe.candidate(f, g)
        assert c is not None
        cands.append(c)
    fused = pipe.template(cands)
    assert abs(float(np.linalg.norm(fused)) - 1.0) < 1e-5
    singles = [pipe.template([c]) for c in cands]
    # the fused template sits among its frames: closer to each than the frames are to the worst one
    assert min(cosine(fused, s) for s in singles) >= min(cosine(a, b) for a in singles for b in singles)


def test_candidate_refuses_a_failed_guide(pipe) -> None:  # type: ignore[no-untyped-def]
    blank = np.full((240, 320, 3), 128, np.uint8)
    with pytest.raises(ValueError, match="passed the guide"):
        pipe.candidate(blank, pipe.guide(blank))


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("mesh_passes", 3, "pipeline.mesh_passes: expected 1 or 2, got 3"),
    ("mesh_passes", "2", "pipeline.mesh_passes: expected int, got '2'"),
    ("fusion", "median", "pipeline.fusion: expected 'quality-weighted' or 'mean', got 'median'"),
    ("flip_average", 1, "pipeline.flip_average: expected bool, got 1"),
    ("mesh_convention", "yes", "pipeline.mesh_convention: expected bool, got 'yes'"),
    ("fallback_detector", "yunet_9000", "pipeline.fallback_detector: expected one of"),
    ("fallback_detector", "blazeface", "pipeline.fallback_detector: expected a YuNet model"),
])
def test_template_settings_are_checked(models_dir: Path, key: str, value: object, expected: str) -> None:
    from kycedge.core.errors import ModelError
    from kycedge.vision import Pipeline

    with pytest.raises(ModelError, match=expected):
        Pipeline.load(models_dir, overrides={key: value})


def test_refined_flipped_template_differs_and_stays_close(models_dir: Path,
                                                          portraits: list[np.ndarray]) -> None:
    from kycedge.vision import Pipeline

    plain = Pipeline.load(models_dir, overrides={"landmarks": "none", "flip_average": False})
    refined = Pipeline.load(models_dir, overrides={"landmarks": "facemesh", "flip_average": True,
                                                   "mesh_passes": 2})
    a, b = plain.process_frame(portraits[0]), refined.process_frame(portraits[0])
    assert a.template is not None
    assert b.template is not None
    assert not np.array_equal(a.template, b.template)
    assert cosine(a.template, b.template) > 0.9  # same face, slightly different crop
    assert not np.allclose(a.landmarks, b.landmarks)  # the crop was aligned on FaceMesh's points


@pytest.mark.shared_data
def test_fallback_detector_runs_for_still_images_only(models_dir: Path, shared_data: Path, faces_dir: Path,
                                                      portraits: list[np.ndarray]) -> None:
    # an lfw-dev photo BlazeFace misses (ADR 0012): a still image gets a second look with
    # YuNet, a session frame is told "no face" at BlazeFace's cost (the next frame comes)
    from kycedge.vision import Pipeline, VisionConfig
    from kycedge.vision.quality import QualityConfig

    path = shared_data / "lfw-dev" / "images" / "Yasser_Arafat" / "Yasser_Arafat_0005.jpg"
    off = VisionConfig(quality=QualityConfig(enabled=False))  # the face is small: gates off
    plain = Pipeline.load(models_dir, config=off, overrides={"fallback_detector": "none"})
    assert plain.fallback is None
    assert plain.process_image_bytes(path.read_bytes()).reason == "no-face"
    pipe = Pipeline.load(models_dir, config=off, overrides={"fallback_detector": "yunet_320_fp16"})
    res = pipe.process_image_bytes(path.read_bytes())
    assert (res.faces, res.reason) == (1, "ok")
    assert res.template is not None
    assert "fallback" in res.ms
    for streamed in (pipe.guide(rgb_of(path)), pipe.process_frame(rgb_of(path))):  # session frames
        assert (streamed.reason, streamed.faces) == ("no-face", 0)
        assert "fallback" not in streamed.ms
    found = pipe.process_frame(portraits[0])  # BlazeFace finds it: no second detector
    assert found.ok
    assert "fallback" not in found.ms
    shipped = Pipeline.load(models_dir, config=off)  # the manifest names it (ADR 0012)
    assert shipped.fallback is not None
    assert "fallback" not in shipped.process_image_bytes(
        (faces_dir / "obama.jpg").read_bytes()).ms
    assert shipped.fallback.model.deferred  # never run: never allocated (the daemon's memory)
    assert shipped.process_image_bytes(path.read_bytes()).ok
    assert not shipped.fallback.model.deferred
