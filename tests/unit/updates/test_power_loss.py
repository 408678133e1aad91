"""Power loss during the switch: kill -9 of a real process at every step, then recovery.

At every instant the ``current`` link must name a complete, servable set (old or new);
after :meth:`ModelStore.recover` (what the daemon runs at start) the unit serves the old
set (interrupted switch undone) or the new one in trial, and the journal is consistent.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from kycedge.unit.updates.stage import verify_set
from kycedge.unit.updates.switch import ModelStore

from .helpers import Fleet

CHILD = r"""
import os, sys
from pathlib import Path
from kycedge.unit.updates.switch import ModelStore
state, new, kill_at, action = sys.argv[1:5]
store = ModelStore(Path(state))
def step(name):
    if name == kill_at:
        os.kill(os.getpid(), 9)
if action == "activate":
    store.activate(Path(new), on_step=step)
else:
    store.rollback("health-check-failed", "test", on_step=step)
print("completed")
"""

ACTIVATE_STEPS = ["journal-switching", "previous-tmp", "previous-linked", "current-tmp",
                  "current-linked", "dir-fsynced", "journal-trial"]
ROLLBACK_STEPS = ["rollback-tmp", "rollback-linked", "rollback-journal"]


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("sets")
    fleet = Fleet(tmp / "fleet")
    try:
        return fleet.bundle(1), fleet.bundle(2)
    finally:
        fleet.close()


def prepare(tmp: Path, b1: Path, b2: Path) -> tuple[ModelStore, Path, Path]:
    store = ModelStore(tmp / "unit")
    store.sets_dir.mkdir(parents=True)
    s1, s2 = store.sets_dir / "b000001-aaaa", store.sets_dir / "b000002-bbbb"
    shutil.copytree(b1, s1)
    shutil.copytree(b2, s2)
    store.activate(s1)
    store.commit()
    return store, s1, s2


def run_child(store: ModelStore, new: Path, kill_at: str, action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CHILD, str(store.root), str(new), kill_at, action],
                          capture_output=True, text=True, timeout=60, check=False)


def assert_servable(store: ModelStore) -> Path:
    cur = store.current()
    assert cur is not None, "current link missing or dangling"
    verify_set(cur)  # every file present with its sha256
    return cur


@pytest.mark.parametrize("kill_at", ACTIVATE_STEPS)
def test_kill_during_activate(tmp_path: Path, two_sets: tuple[Path, Path], kill_at: str) -> None:
    store, s1, s2 = prepare(tmp_path, *two_sets)
    proc = run_child(store, s2, kill_at, "activate")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert_servable(store)                                   # consistent even before recovery
    rec = store.recover()
    cur = assert_servable(store)
    if kill_at == "journal-trial":
        assert (rec.action, cur) == ("trial", s2)              # switch complete: new set on trial
        assert store.journal().state == "trial"
    else:
        assert (rec.action, cur) == ("undid-interrupted-switch", s1)
        assert store.journal().state == "stable"
        assert 2 not in store.journal().rejected               # not the bundle's fault: retried later
    assert not list(store.root.glob(".*.tmp"))
    # A second recovery (another power loss right after) changes nothing.
    assert store.recover().current == cur


@pytest.mark.parametrize("kill_at", ROLLBACK_STEPS)
def test_kill_during_rollback(tmp_path: Path, two_sets: tuple[Path, Path], kill_at: str) -> None:
    store, s1, s2 = prepare(tmp_path, *two_sets)
    store.activate(s2)
    proc = run_child(store, s2, kill_at, "rollback")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert_servable(store)
    rec = store.recover()
    if kill_at == "rollback-tmp":
        # The swap had not happened: the trial goes on (the agent health-checks it again);
        # repeated restarts end it as a crash loop.
        assert (rec.action, assert_servable(store)) == ("trial", s2)
        store.recover()
        rec = store.recover()
        assert rec.reason == "crash-loop"
    assert assert_servable(store) == s1
    if kill_at == "rollback-linked":
        assert (rec.action, rec.reason) == ("rolled-back", "interrupted-rollback")
    assert store.journal().rejected == (2,)
    assert store.journal().state == "stable"


def test_child_completes_without_kill(tmp_path: Path, two_sets: tuple[Path, Path]) -> None:
    store, _s1, s2 = prepare(tmp_path, *two_sets)
    proc = run_child(store, s2, "never", "activate")
    assert (proc.returncode, proc.stdout.strip()) == (0, "completed")
    assert store.current() == s2
