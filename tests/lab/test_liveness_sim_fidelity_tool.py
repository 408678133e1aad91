"""tools/liveness_sim_fidelity.py: the summary (no model) and one fixture portrait through it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support.tools import load_tool


@pytest.fixture(scope="module")
def tool():  # type: ignore[no-untyped-def]
    return load_tool("liveness_sim_fidelity.py")


def test_the_summary_groups_portraits_by_their_own_yaw(tool) -> None:  # type: ignore[no-untyped-def]
    rows = [{"own_yaw_deg": 3.0, "mirrored": {"hidden": 24.0, "other": 23.0},
             "unmirrored": {"hidden": 24.0, "other": 23.0}},
            {"own_yaw_deg": -16.0, "mirrored": {"hidden": 25.0, "other": 27.0},
             "unmirrored": {"hidden": 15.1, "other": None}},
            {"own_yaw_deg": 21.0, "mirrored": {"hidden": 23.0, "other": 26.0},
             "unmirrored": {"hidden": 17.4, "other": 22.0}}]
    s = tool.summarise(rows, 18.0)
    turned = s["unmirrored"]["own_yaw_from_10"]
    assert turned["hidden"] == {"portraits": 2, "lost": 0, "median_read_deg": 16.25,
                                "lowest_read_deg": [15.1, 17.4], "read_below_18": 2}
    assert turned["other"]["lost"] == 1
    assert s["mirrored"]["own_yaw_from_10"]["hidden"]["read_below_18"] == 0
    assert s["mirrored"]["own_yaw_below_10"]["hidden"]["portraits"] == 1


def test_a_turned_fixture_portrait_reads_its_turns(tool, faces_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from kycedge.vision import Pipeline, default_models_dir

    models = default_models_dir()
    if not (models / "manifest.json").exists():
        pytest.skip(f"no model manifest at {models}")
    from kycedge.lab.liveness_sim.build import FOCAL_PX, portrait_mesh
    from kycedge.lab.liveness_sim.head import build_head
    from kycedge.vision.decode import decode_image
    from kycedge.vision.liveness.geometry import yaw_deg
    from kycedge.vision.liveness.observe import load_observer

    pipe = Pipeline.load(models)
    observer = load_observer(pipe.manifest)
    pm = portrait_mesh(pipe, observer, decode_image((faces_dir / "obama2.jpg").read_bytes()))
    assert pm is not None
    own = yaw_deg(pm[1])
    head = build_head(pm[0], pm[1], background=np.full((300, 400, 3), 128, np.uint8), focal_px=FOCAL_PX,
                      supersample=1.6, yaw_deg=own)
    r = tool.read_turns(pipe, observer, head, 26.0, own)
    assert r["hidden"] is not None
    assert r["other"] is not None
    assert 18.0 < r["hidden"] < 34.0, r
    assert 18.0 < r["other"] < 34.0, r


def test_replay_rule_rates_over_all_and_complete_recordings() -> None:
    tool = load_tool("replay_prompt_rules.py")
    rows = [{"recording": "passed", "shipped": 1, "blink_first": 3},
            {"recording": "failed", "shipped": 0, "blink_first": 1}]
    r = tool.rates(rows, 100)
    assert r["blink_first"]["all_recordings"] == {"recordings": 2, "challenges": 200, "passed": 4,
                                                  "rate": 0.02}
    assert r["shipped"]["complete_recordings"] == {"recordings": 1, "challenges": 100, "passed": 1,
                                                   "rate": 0.01}
