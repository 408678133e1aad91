"""tools/eval_screen_cues.py: the separation arithmetic (AUC, threshold at a BPCER, APCER/BPCER)."""

from __future__ import annotations

import pytest
from support.tools import load_tool


@pytest.fixture(scope="module")
def ev():  # type: ignore[no-untyped-def]
    return load_tool("eval_screen_cues.py")


def test_auc_counts_pairs_and_ties(ev) -> None:  # type: ignore[no-untyped-def]
    assert ev.auc([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert ev.auc([1.0, 2.0], [3.0, 4.0]) == 0.0
    assert ev.auc([1.0], [1.0]) == 0.5
    assert ev.auc([2.0, 0.0], [1.0]) == 0.5
    assert ev.auc([], [1.0]) is None


def test_threshold_at_bpcer_leaves_that_share_of_live_above(ev) -> None:  # type: ignore[no-untyped-def]
    live = [float(i) for i in range(100)]
    t = ev.threshold_at_bpcer(live, 0.02)
    assert sum(v > t for v in live) == 2
    assert sum(v > ev.threshold_at_bpcer(live, 0.0) for v in live) == 0


def test_evaluate_reports_each_cue_in_its_direction(ev) -> None:  # type: ignore[no-untyped-def]
    names = ev.CUE_NAMES
    items = []
    for i in range(50):
        for label, src, shift in (("live", "a", 0.0), ("attack", "a", 1.0), ("live", "b", 0.5)):
            cues = {n: float(i % 10) / 10 for n in names}
            cues["blue_shift"] += shift          # attacks bluer: larger = screen
            cues["sharpness"] -= shift           # attacks blurrier: smaller = screen
            items.append({"label": label, "source": src, "cues": cues})
    out = ev.evaluate(items, 0.02, {})
    blue, sharp = out["cues"]["blue_shift"], out["cues"]["sharpness"]
    assert blue["auc"] > 0.9
    assert sharp["auc"] > 0.9
    assert blue["auc_per_source"] == {"a": 1.0}           # only source a has both labels
    assert blue["bpcer"] <= 0.02
    assert out["cues"]["glare_fraction"]["auc"] == 0.5   # no difference: chance
    given = ev.evaluate(items, 0.02, {"blue_shift": 100.0})["cues"]["blue_shift"]
    assert given["apcer"] == 1.0
    assert given["bpcer"] == 0.0
    assert given["threshold_from"] == "given"


def test_black_padding_is_lfws_rectangle_around_a_photo(ev) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    photo = np.full((250, 250, 3), 120, np.uint8)
    assert not ev.black_padded(photo)
    padded = photo.copy()
    padded[:, :20] = 0                                   # a photo narrower than the crop
    assert ev.black_padded(padded)
    dark = np.full((250, 250, 3), 20, np.uint8)          # a dark room is not padding
    assert not ev.black_padded(dark)
