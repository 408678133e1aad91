"""Fixtures for the update tests: a fleet repository served on loopback and a unit on bundle 1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import FakeDaemon, Fleet, make_agent


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    f = Fleet(tmp_path / "fleet")
    yield f
    f.close()


@pytest.fixture
def daemon() -> FakeDaemon:
    return FakeDaemon()


@pytest.fixture
def unit_on_v1(tmp_path: Path, fleet: Fleet, daemon: FakeDaemon):  # type: ignore[no-untyped-def]
    """An agent whose unit runs bundle 1 (installed through the normal update path)."""
    fleet.release(1)
    agent = make_agent(tmp_path, fleet, daemon)
    st = agent.check_now()
    assert (st.outcome, st.bundle_version) == ("updated", 1), st
    return agent
