"""tools/liveness_real_measures.py: the dip and blink arithmetic on EAR traces (no model)."""

from __future__ import annotations

import pytest
from kycedge.vision.liveness.checks import CheckConfig
from kycedge.vision.liveness.observe import Observation
from support.liveness import obs
from support.tools import load_tool


@pytest.fixture(scope="module")
def tool():  # type: ignore[no-untyped-def]
    return load_tool("liveness_real_measures.py")


def _trace(ratios: list[float], yaw_step: float = 0.0) -> list[Observation]:
    out = []
    for i, r in enumerate(ratios):
        o = obs(i / 15, yaw_deg=yaw_step * i)
        out.append(Observation(t_s=o.t_s, faces=1, box=o.box, points=o.points, yaw_deg=o.yaw_deg,
                               ear=0.3 * r, iod_px=o.iod_px))
    return out


def test_dips_depth_and_time_below_the_check(tool) -> None:  # type: ignore[no-untyped-def]
    tr = _trace([1.0, 1.0, 0.88, 0.6, 0.7, 0.95, 1.0, 0.89, 1.0])
    d = tool.dips(tr, 0.3, 0.9, 0.85)
    assert [x["depth"] for x in d] == [0.6, 0.89]
    assert d[0]["frames"] == 3
    assert d[0]["below_check_s"] == pytest.approx(2 / 15, abs=0.01)
    assert d[1]["below_check_s"] == 0.0


def test_the_rule_before_refuses_a_blink_that_reopens_part_way(tool) -> None:  # type: ignore[no-untyped-def]
    smiling = [1.0] * 8 + [0.9, 0.84, 0.48, 0.57] + [0.81] * 12
    tr = _trace(smiling)
    assert tool.blinks_rule_before(tr, 0.3) == 0
    m = tool.measure(tr, 0.9, CheckConfig())
    assert m["check_blinks"] == 1
    assert m["blinks_rule_before"] == 0


def test_yaw_speed(tool) -> None:  # type: ignore[no-untyped-def]
    # the mesh reads the set yaw only roughly (perspective)
    assert tool.yaw_speed(_trace([1.0] * 10, yaw_step=2.0)) == pytest.approx(30.0, rel=0.2)
