"""Property test: any sequence of activate / commit / rollback / restart keeps the store
consistent and servable."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from kycedge.unit.updates.stage import verify_set
from kycedge.unit.updates.switch import ModelStore

from .helpers import Fleet

_BUNDLES: list[Path] = []


@pytest.fixture(scope="module", autouse=True)
def bundles(tmp_path_factory: pytest.TempPathFactory) -> None:
    fleet = Fleet(tmp_path_factory.mktemp("st") / "fleet")
    try:
        _BUNDLES[:] = [fleet.bundle(v) for v in (1, 2, 3)]
    finally:
        fleet.close()


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="store-"))
        self.store = ModelStore(self.tmp / "unit")
        self.store.sets_dir.mkdir(parents=True)
        self.sets = []
        for i, b in enumerate(_BUNDLES, 1):
            dest = self.store.sets_dir / f"b{i:06d}-x"
            shutil.copytree(b, dest)
            self.sets.append(dest)
        self.store.activate(self.sets[0])
        self.store.commit(keep_sets=10)

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    @precondition(lambda self: self.store.journal().state == "stable")
    @rule(i=st.integers(0, 2))
    def activate(self, i: int) -> None:
        if self.sets[i] != self.store.current():
            self.store.activate(self.sets[i])
            assert self.store.journal().state == "trial"
            assert self.store.current() == self.sets[i]

    @precondition(lambda self: self.store.journal().state == "trial")
    @rule()
    def commit(self) -> None:
        cur = self.store.current()
        self.store.commit(keep_sets=10)
        assert self.store.current() == cur

    @precondition(lambda self: self.store.journal().state == "trial")
    @rule()
    def health_fails(self) -> None:
        j = self.store.journal()
        self.store.rollback("health-check-failed", "x")
        assert self.store.current() == self.store.sets_dir.resolve() / str(j.from_set)

    @rule(boots=st.integers(0, 3))
    def restart(self, boots: int) -> None:
        self.store.recover(max_trial_boots=boots)

    @invariant()
    def consistent(self) -> None:
        cur = self.store.current()
        assert cur is not None
        verify_set(cur)
        j = self.store.journal()
        assert j.state in ("stable", "trial")
        if j.state == "trial":
            assert cur.name == j.to_set


TestStore = StoreMachine.TestCase
TestStore.settings = settings(max_examples=12, stateful_step_count=10, deadline=None)
