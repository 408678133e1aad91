"""tools/liveness_tracking_measures.py: the totals (no model) and the real clip it was written for."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.tools import load_tool


@pytest.fixture(scope="module")
def tool():  # type: ignore[no-untyped-def]
    return load_tool("liveness_tracking_measures.py")


def _m(**kw: float) -> dict[str, float]:
    base = {"frames": 10, "raw_second_box": 0, "second_face": 0, "yunet_raw_second_box": 0,
            "yunet_second_face": 0, "no_face": 0, "no_mesh": 0, "gap_mesh_s": 0.067, "gap_box_s": 0.067,
            "jump_widths": 0.01, "templates": 9, "below_match": 0, "run_below_match": 0,
            "templates_near_frontal": 8, "below_match_near_frontal": 0}
    return {**base, **kw}


def test_totals_per_label(tool) -> None:  # type: ignore[no-untyped-def]
    clips = {"live/a": _m(raw_second_box=6, gap_mesh_s=0.867), "live/b": _m(no_mesh=3),
             "attack/c": _m(yunet_second_face=28, yunet_raw_second_box=28)}
    labels = {"live/a": "live", "live/b": "live", "attack/c": "attack"}
    t = tool.summarise(clips, labels)
    assert t["live"]["clips"] == 2
    assert t["live"]["frames"] == 20
    assert t["live"]["raw_second_box"] == 6
    assert t["live"]["clips_with_second_face"] == 0
    assert t["live"]["max_gap_mesh_s"] == 0.867
    assert t["live"]["no_mesh"] == 3
    assert t["attack"]["yunet_second_face"] == 28
    clips["live/b"] = _m(below_match=4, run_below_match=3)
    t = tool.summarise(clips, labels)
    assert t["live"]["clips_below_match"] == 1
    assert t["live"]["below_match"] == 4
    assert t["live"]["max_run_below_match"] == 3
    assert t["live"]["clips_below_match_near_frontal"] == 0
    assert t["live"]["templates_near_frontal"] == 16


def test_identity_runs(tool) -> None:  # type: ignore[no-untyped-def]
    r = tool.identity_runs([0.9, 0.3, 0.2, 0.41, 0.9, 0.3], 0.4276)
    assert r == {"templates": 6, "identity_min": 0.2, "below_match": 4, "run_below_match": 3}
    assert tool.identity_runs([], 0.4276)["identity_min"] is None


def test_the_spurious_box_on_a_real_live_clip_is_not_a_second_face(tool, shared_data: Path) -> None:  # type: ignore[no-untyped-def]
    from kycedge.vision import Pipeline, default_models_dir
    from kycedge.vision.liveness.observe import load_observer

    pipe = Pipeline.load(default_models_dir())
    m = tool.measure_clip(shared_data / "pad-video-dev" / "live" / "tranvanluyt_real_b", pipe,
                          load_observer(pipe.manifest), 15.0)
    assert m["frames"] == 105
    assert m["raw_second_box"] == 6     # BlazeFace's box over the forehead
    assert m["second_face"] == 0        # the one-face rule does not count it
    assert m["no_face"] == 0
    assert m["gap_box_s"] < 0.6
    # a genuine person whose later templates dip under the match threshold against the first
    # (docs/liveness.md, "Tracking on real people": the continuity rule is not clean on them)
    assert m["below_match"] >= 1
