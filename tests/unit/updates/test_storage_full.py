"""A full state filesystem during an update says ``storage-full`` (not ``unreachable`` and not
a retry storm), leaves the unit on its models, and the next check after space is freed
installs the bundle (a real 1 MiB tmpfs: tests/support/smallfs.py)."""

from __future__ import annotations

from pathlib import Path

from kycedge.unit.updates.agent import UpdateAgent

from tests.support.smallfs import SmallFs  # the small_fs fixture: tests/unit/conftest.py

from .helpers import FakeDaemon, Fleet, make_agent


def agent_on_small_fs(fs: SmallFs, tmp: Path, fleet: Fleet, daemon: FakeDaemon) -> UpdateAgent:
    fleet.release(1)
    agent = make_agent(tmp, fleet, daemon, state_dir=fs.root / "unit")
    st = agent.check_now()
    assert (st.outcome, st.bundle_version) == ("updated", 1), st
    return agent


def test_full_while_downloading_a_bundle(small_fs: SmallFs, tmp_path: Path, fleet: Fleet,
                                         daemon: FakeDaemon) -> None:
    agent = agent_on_small_fs(small_fs, tmp_path, fleet, daemon)
    fleet.release(2, size=2 * 1024 * 1024)       # larger than the whole filesystem
    st = agent.check_now()
    assert (st.outcome, st.reason) == ("failed", "storage-full"), st
    assert agent.store.installed_version() == 1
    assert daemon.serve(agent.store.current()) == "emb@v1"
    fleet.release(3, size=100_000)               # fits once the failed attempt is cleaned up
    st = agent.check_now()
    assert (st.outcome, st.bundle_version) == ("updated", 3), st


def test_full_before_the_check(small_fs: SmallFs, tmp_path: Path, fleet: Fleet,
                               daemon: FakeDaemon) -> None:
    agent = agent_on_small_fs(small_fs, tmp_path, fleet, daemon)
    fleet.release(2, size=50_000)
    small_fs.fill()
    st = agent.check_now()
    assert (st.outcome, st.reason) == ("failed", "storage-full"), st
    assert agent.store.installed_version() == 1
    small_fs.free()
    st = agent.check_now()
    assert (st.outcome, st.bundle_version) == ("updated", 2), st
