"""Staging details: unchanged files are not downloaded again; firmware gate; journal states."""

from __future__ import annotations

import re

from kycedge.unit.updates.agent import UpdateAgent
from kycedge.unit.updates.switch import Journal

from .helpers import FakeDaemon, Fleet


def test_unchanged_files_are_reused_not_downloaded(unit_on_v1: UpdateAgent, fleet: Fleet,
                                                   daemon: FakeDaemon) -> None:
    fleet.release(2, seed=1)                   # same model files as bundle 1, new golden images
    st = unit_on_v1.check_now()
    assert (st.outcome, st.bundle_version) == ("updated", 2), st
    fetched = [p for p, _ in fleet.faults.requests if "/bundles/2/" in p]
    assert not [p for p in fetched if re.search(r"\.(det|emb)\.tflite$", p)]
    assert any(p.endswith(".bundle.json") for p in fetched)
    assert daemon.serve(unit_on_v1.store.current()) == "emb@v1"   # model version of seed 1


def test_bundle_needing_newer_firmware_is_refused(unit_on_v1: UpdateAgent, fleet: Fleet,
                                                  daemon: FakeDaemon) -> None:
    fleet.release(2, min_firmware="99.0")
    st = unit_on_v1.check_now()
    assert (st.outcome, st.reason) == ("failed", "incompatible-firmware"), st
    assert "99.0" in st.message
    assert unit_on_v1.store.installed_version() == 1


def test_older_bundle_in_rollout_is_not_installed(unit_on_v1: UpdateAgent, fleet: Fleet) -> None:
    fleet.release(2)
    assert unit_on_v1.check_now().bundle_version == 2
    from kycedge.fleet.bundle_build import set_rollout
    from kycedge.protocol.rollout import Rollout

    set_rollout(fleet.repo, Rollout(1, None))          # validly signed, but older than what runs
    fleet.repo.publish(fleet.www)
    st = unit_on_v1.check_now()
    assert (st.outcome, st.bundle_version, st.target_version) == ("up-to-date", 2, 1)


def test_journal_round_trip_and_corruption(unit_on_v1: UpdateAgent) -> None:
    j = Journal("trial", "a", "b", 2, (3, 4), {"reason": "x"})
    assert Journal.parse(j.to_json()) == j
    unit_on_v1.store.journal_path.write_bytes(b"\x00not json")
    assert unit_on_v1.store.journal().state == "stable"
    rec = unit_on_v1.store.recover()
    assert rec.current == unit_on_v1.store.current()
    assert rec.current is not None


def test_concurrent_check_is_not_started_twice(unit_on_v1: UpdateAgent) -> None:
    assert unit_on_v1._lock.acquire()
    try:
        assert unit_on_v1.check_now() is unit_on_v1.status
    finally:
        unit_on_v1._lock.release()
