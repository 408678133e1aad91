"""tools/liveness_sim_fidelity.py and tools/replay_prompt_rules.py: their summaries (no model).

The fidelity tool's reading of a fixture head is in tests/lab/test_liveness_sim.py."""

from __future__ import annotations

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



def test_replay_rule_rates_over_all_and_complete_recordings() -> None:
    tool = load_tool("replay_prompt_rules.py")
    rows = [{"recording": "passed", "shipped": 1, "blink_first": 3},
            {"recording": "failed", "shipped": 0, "blink_first": 1}]
    r = tool.rates(rows, 100)
    assert r["blink_first"]["all_recordings"] == {"recordings": 2, "challenges": 200, "passed": 4,
                                                  "rate": 0.02}
    assert r["shipped"]["complete_recordings"] == {"recordings": 1, "challenges": 100, "passed": 1,
                                                   "rate": 0.01}
