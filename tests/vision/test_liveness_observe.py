"""The liveness observer: one FaceMesh interpreter shared with the pipeline, same landmarks."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from kycedge.core.errors import ModelError
from kycedge.core.paths import data_dir
from kycedge.unit.liveness import pipeline_analyze
from kycedge.vision.decode import decode_image
from kycedge.vision.liveness.observe import load_observer


def test_the_pipelines_facemesh_is_reused_not_loaded_twice(pipe: Any) -> None:
    assert pipe.mesh is not None
    shared = load_observer(pipe.manifest, shared=pipe.mesh)
    assert shared.mesh is pipe.mesh
    own = load_observer(pipe.manifest)  # no pipeline at hand (the CLI, tools): its own copy
    assert own.mesh is not pipe.mesh
    rgb = decode_image((data_dir("faces") / "obama.jpg").read_bytes())
    res = pipe.process_frame(rgb)
    assert res.box is not None
    assert res.landmarks is not None
    a = shared.observe(rgb, 0.0, res.faces, res.box, res.landmarks[0], res.landmarks[1])
    b = own.observe(rgb, 0.0, res.faces, res.box, res.landmarks[0], res.landmarks[1])
    assert a is not None
    assert b is not None
    np.testing.assert_allclose(a.points, b.points, rtol=0, atol=1e-9)


def test_a_liveness_model_other_than_the_pipelines_is_loaded_on_its_own(pipe: Any) -> None:
    # the pipeline aligns without FaceMesh here: the liveness FaceMesh is then a model of its
    # own, never the interpreter passed in
    other = dataclasses.replace(pipe.manifest, pipeline={**pipe.manifest.pipeline, "landmarks": "none"})
    obs = load_observer(other, shared=pipe.mesh)
    assert obs.mesh is not pipe.mesh
    bad = dataclasses.replace(pipe.manifest, pipeline={**pipe.manifest.pipeline,
                                                       "liveness_landmarks": "nosuch"})
    with pytest.raises(ModelError, match="liveness_landmarks"):
        load_observer(bad, shared=pipe.mesh)


def test_the_session_analysis_uses_the_pipelines_interpreter(pipe: Any) -> None:
    import kycedge.unit.liveness as gate

    pipeline_analyze(pipe)
    assert gate._observer is not None
    assert gate._observer[1].mesh is pipe.mesh
