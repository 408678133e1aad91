"""A rejected bundle is remembered with why: not fetched or tested again, and the status says so."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from kycedge.protocol.update_errors import SelfTestError
from kycedge.unit.updates.agent import UpdateAgent

from .helpers import FakeDaemon, Fleet, make_agent


def bundle_requests(fleet: Fleet, version: int) -> list[str]:
    with fleet.faults.lock:
        return [p for p, _ in fleet.faults.requests if f"/bundles/{version}/" in p]


def test_selftest_failure_is_recorded_and_not_retried(tmp_path: Path, fleet: Fleet, daemon: FakeDaemon,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    tested: list[str] = []

    def selftest(path: Path, manifest: object) -> None:
        tested.append(path.name)
        if path.name.startswith("b000002"):
            raise SelfTestError("golden image g0-g0: expected 1 - cosine to the bundle's embedding "
                                "<= 0.02, got 0.4000")

    fleet.release(1)
    agent = make_agent(tmp_path, fleet, daemon, selftest=selftest)
    assert agent.check_now().bundle_version == 1
    fleet.release(2)
    with caplog.at_level(logging.WARNING, logger="kycedge.unit.updates.agent"):
        st = agent.check_now()
    assert (st.outcome, st.reason, st.target_version) == ("failed", "selftest-failed", 2), st
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("selftest-failed" in m and "golden image g0-g0" in m for m in warnings), warnings
    why = agent.store.journal().rejection(2)
    assert why is not None
    assert (why["outcome"], why["reason"]) == ("failed", "selftest-failed")
    assert "golden image g0-g0" in why["message"]
    assert not list(agent.store.sets_dir.glob("b000002-*"))        # the failed set is gone
    fetched = len(bundle_requests(fleet, 2))
    assert fetched > 0
    assert tested.count(tested[-1]) == 1

    # next poll, and a restart: nothing fetched, nothing tested, the status still says why
    caplog.clear()
    for a in (agent, make_agent(tmp_path, fleet, daemon, selftest=selftest)):
        a.startup()
        st = a.check_now()
        assert (st.outcome, st.reason, st.target_version, st.bundle_version) == \
            ("failed", "selftest-failed", 2, 1), st
        assert "rejected here before" in st.message
        assert "golden image g0-g0" in st.message
    assert len(bundle_requests(fleet, 2)) == fetched
    assert [t for t in tested if t.startswith("b000002")] == [tested[-1]]
    # a newer bundle is still installed
    fleet.release(3)
    assert agent.check_now().bundle_version == 3


def test_crash_loop_rollback_survives_the_next_check(unit_on_v1: UpdateAgent, fleet: Fleet,
                                                     daemon: FakeDaemon, tmp_path: Path) -> None:
    fleet.release(2)

    def crash(path: Path) -> None:
        if path.name.startswith("b000002"):
            raise SystemExit("daemon died loading the new models")  # not caught: the process ends
        daemon.reload_models(path)

    unit_on_v1._reload = crash  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        unit_on_v1.check_now()
    assert unit_on_v1.store.journal().state == "trial"
    for _ in range(3):                                              # the daemon restarts, and dies
        agent = make_agent(tmp_path, fleet, daemon)
        rec = agent.startup()
    assert (rec.action, rec.reason) == ("rolled-back", "crash-loop")
    assert (agent.status.outcome, agent.status.reason) == ("rolled-back", "crash-loop")
    st = agent.check_now()
    assert (st.outcome, st.reason, st.target_version, st.bundle_version) == \
        ("rolled-back", "crash-loop", 2, 1), st
    assert "daemon restarted 3 times" in st.message


def test_old_journal_without_reasons_still_parses(tmp_path: Path) -> None:
    from kycedge.unit.updates.switch import Journal

    j = Journal.parse(b'{"state": "stable", "rejected": [4], "last_rollback": null}')
    assert j.rejected == (4,)
    assert j.rejection(4) == {}
    assert j.rejection(5) is None
    again = Journal.parse(j.with_rejection(5, "failed", "selftest-failed", "x", 1.0).to_json())
    assert again.rejected == (4, 5)
    assert again.rejection(5) == {"outcome": "failed", "reason": "selftest-failed", "message": "x", "at": 1.0}


def test_old_sets_collected_with_keep_sets(tmp_path: Path, fleet: Fleet, daemon: FakeDaemon) -> None:
    """factory -> 1 -> 2 -> 3 -> 4 (rolled back) -> 5 with keep_sets = 2: never more than two
    sets on disk once each step is over (the review found four, 50 MB)."""
    from .helpers import fake_models_dir

    agent = make_agent(tmp_path, fleet, daemon, keep_sets=2)
    agent.startup()
    agent.store.seed(fake_models_dir(tmp_path / "shipped", 0))

    def sets() -> list[str]:
        return sorted(p.name for p in agent.store.sets_dir.iterdir() if not p.name.startswith("."))

    assert sets() == ["factory"]
    for v in (1, 2, 3):
        fleet.release(v)
        assert agent.check_now().bundle_version == v
        assert len(sets()) <= 2, sets()
    fleet.release(4)
    daemon.fail_load_prefix = "b000004"
    st = agent.check_now()
    assert (st.outcome, st.reason) == ("rolled-back", "load-failed")
    assert len(sets()) <= 2, sets()
    assert not any(s.startswith("b000004") for s in sets())       # the rejected set goes first
    daemon.fail_load_prefix = None
    fleet.release(5)
    assert agent.check_now().bundle_version == 5
    assert [s[:7] for s in sets()] == ["b000003", "b000005"]
    # a restart with a larger history (keep_sets lowered by config) collects too
    for name in ("b000001-old", "b000002-old"):
        (agent.store.sets_dir / name).mkdir()
    make_agent(tmp_path, fleet, daemon, keep_sets=2).startup()
    assert [s[:7] for s in sets()] == ["b000003", "b000005"]
