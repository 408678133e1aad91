"""The carrier's SQLite store on a full filesystem (a real 1 MiB tmpfs): the receiver answers
nothing it has not recorded. Every receipt it returned is backed by a durable row; the
envelope it could not record raises ``CarrierError`` (acknowledge nothing, the unit keeps
it), and once space is freed the same bytes get their receipt. (SQLite only: PostgreSQL's
data directory is its server's, not a path a test can fill.)"""

from __future__ import annotations

from pathlib import Path

from kycedge.carrier.store import open_store
from kycedge.core.errors import CarrierError
from support.smallfs import SmallFs
from support.smallfs import small_fs as small_fs  # the fixture, re-exported

from .helpers import make_world, unit_vector


def test_full_store_answers_only_what_it_recorded(small_fs: SmallFs, tmp_path: Path) -> None:
    db = small_fs.root / "carrier.db"
    w = make_world(tmp_path, str(db))
    unit = w.unit()
    answered: list[str] = []
    try:
        first = w.receiver.handle(unit.seal(unit_vector(1)))
        assert first.receipt is not None
        answered.append(str(first.message_id))
        small_fs.fill()
        refused: bytes | None = None
        why = ""
        # SQLite may still have room in pages and WAL it already owns: keep sending until it
        # has none (each envelope's template row is about 2 KiB)
        for i in range(2000):
            env = unit.seal(unit_vector(2 + i % 50))
            try:
                out = w.receiver.handle(env)
            except CarrierError as e:
                why = str(e).lower()
                refused = env
                break
            assert out.receipt is not None
            answered.append(str(out.message_id))
        assert refused is not None, "the store never reported the full filesystem"
        assert "full" in why, why
        small_fs.free()
        out = w.receiver.handle(refused)
        assert out.receipt is not None, out
        assert out.reason != "internal-error", out
        answered.append(str(out.message_id))
    finally:
        w.receiver.close()
    with open_store(str(db)) as store:            # what a restarted receiver finds
        found = store.find_receipts(answered)
    assert sorted(found) == sorted(answered)

