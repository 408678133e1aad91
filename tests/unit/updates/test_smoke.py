from __future__ import annotations

from .helpers import FakeDaemon, Fleet


def test_update_to_v2(unit_on_v1, fleet: Fleet, daemon: FakeDaemon) -> None:
    fleet.release(2)
    st = unit_on_v1.check_now()
    assert (st.outcome, st.bundle_version) == ("updated", 2), st
    assert daemon.serve(unit_on_v1.store.current()) == "emb@v2"
