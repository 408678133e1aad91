"""Storage: migrations, registry rows, atomic ingest records, retention. Both backends."""

from __future__ import annotations

import threading

import pytest
from kycedge.carrier.store import (
    MIGRATIONS,
    Commit,
    DeviceRecord,
    ReferenceRecord,
    SqlStore,
    StoredTemplate,
    open_store,
    replace,
)
from kycedge.core.errors import CarrierError

H0 = b"\x00" * 32


def commit(mid: str, seq: int | None, digest: bytes, prev: bytes = H0, *, t: int = 1000,
           accepted: bool = True) -> Commit:
    return Commit(
        message_id=mid, tenant="t1", device_id="d1", key_id="k1", seq=seq, envelope_hash=b"e" + digest[1:],
        digest=digest, prev_digest=prev, status="accepted" if accepted else "rejected",
        reason="match" if accepted else "stale", receipt=b"receipt:" + mid.encode(), received_at_ms=t,
        template=StoredTemplate("ref", "m", "1", t, b"ct:" + mid.encode()) if accepted else None,
    )


def replayed(c: Commit, why: str) -> Commit:
    return replace(c, seq=None, template=None, status="rejected", reason="replayed",
                   receipt=b"replayed:" + c.message_id.encode())


def test_migrations_are_versioned_and_idempotent(db_target: str) -> None:
    s = open_store(db_target)
    try:
        assert s.schema_version() == MIGRATIONS[-1].version
        assert s.migrate() == MIGRATIONS[-1].version  # second run: nothing to do
        assert s.counts() == {"devices": 0, "reference_templates": 0, "receipts": 0, "sequences": 0,
                              "templates": 0}
    finally:
        s.close()
    s2 = open_store(db_target, migrate=False)  # schema present: opens without migrating
    s2.close()


def test_upgrade_from_version_1(db_target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import kycedge.carrier.store as store_mod

    monkeypatch.setattr(store_mod, "MIGRATIONS", MIGRATIONS[:1])
    s = open_store(db_target)
    s._run("v1 insert", lambda: s._exec(  # the version-1 columns only
        "INSERT INTO devices (tenant, device_id, key_id, public_key, status, enrolled_at_ms) "
        "VALUES (?, ?, ?, ?, ?, ?)", ("t1", "d1", "k1", b"p" * 32, "active", 5)))
    assert s.schema_version() == 1
    s.close()
    monkeypatch.setattr(store_mod, "MIGRATIONS", MIGRATIONS)
    latest = MIGRATIONS[-1].version
    with pytest.raises(CarrierError, match=f"expected schema version {latest}, got 1"):
        open_store(db_target, migrate=False)
    s = open_store(db_target)
    try:
        assert s.schema_version() == latest
        rec = s.get_device("t1", "d1", "k1")  # data kept across the upgrade
        assert rec is not None
        assert (rec.signature_alg, rec.key_protection) == ("ed25519", "software")  # migration 3 defaults
        with pytest.raises(CarrierError, match="already enrolled as t1/d1"):
            s.put_device(DeviceRecord("t1", "d2", "k1", b"p" * 32, "active", 6))  # the new unique index
    finally:
        s.close()


def test_unmigrated_database_is_refused_without_migrate(db_target: str) -> None:
    with pytest.raises(CarrierError, match=f"expected schema version {MIGRATIONS[-1].version}, got"):
        open_store(db_target, migrate=False)


def test_newer_schema_is_refused(store: SqlStore) -> None:
    store._run("x", lambda: store._exec(
        "INSERT INTO schema_version (version, description, applied_at_ms) VALUES (99, 'future', 0)"))
    with pytest.raises(CarrierError, match="schema version 99 is newer"):
        store.migrate()


def test_device_rows(store: SqlStore) -> None:
    rec = DeviceRecord("t1", "d1", "k1", b"p" * 32, "active", 5)
    store.put_device(rec)
    assert store.get_device("t1", "d1", "k1") == rec
    assert store.get_device("t2", "d1", "k1") is None
    with pytest.raises(CarrierError, match="already enrolled"):
        store.put_device(rec)
    store.put_device(DeviceRecord("t1", "d1", "k2", b"q" * 32, "active", 6))
    with pytest.raises(CarrierError, match="already enrolled as t1/d1"):
        store.put_device(DeviceRecord("t2", "other", "k9", b"q" * 32, "active", 6))
    assert store.revoke_device("t1", "d1", "k1", 7) == 1
    assert store.revoke_device("t1", "d1", "k1", 8) == 0  # already revoked
    got = store.get_device("t1", "d1", "k1")
    assert got is not None
    assert got.status == "revoked"
    assert got.revoked_at_ms == 7
    assert [d.key_id for d in store.list_devices("t1")] == ["k1", "k2"]
    assert store.revoke_device("t1", "d1", None, 9) == 1
    assert {d.status for d in store.list_devices()} == {"revoked"}


def test_reference_rows(store: SqlStore) -> None:
    rec = ReferenceRecord("t1", "REF-1", "sface", "2021dec", 0.363, 128, b"ct", 1)
    store.put_reference(rec)
    assert store.get_reference("t1", "REF-1") == rec
    assert store.get_reference("t2", "REF-1") is None
    with pytest.raises(CarrierError, match="existing one"):
        store.put_reference(rec)
    store.put_reference(replace_ref := ReferenceRecord("t1", "REF-1", "sface", "2", 0.4, 128, b"c2", 2),
                        replace=True)
    assert store.get_reference("t1", "REF-1") == replace_ref
    assert store.delete_reference("t1", "REF-1") is True
    assert store.get_reference("t1", "REF-1") is None


def test_record_dedupes_by_message_id(store: SqlStore) -> None:
    first = store.record_batch([commit("m1", 1, b"h1" * 16)], replayed)[0]
    assert first.first
    assert first.receipt == b"receipt:m1"
    again = store.record_batch([replace(commit("m1", 1, b"h1" * 16), receipt=b"other")], replayed)[0]
    assert not again.first
    assert again.receipt == b"receipt:m1"
    found = store.find_receipt("m1")
    assert found is not None
    assert (found.envelope_hash, found.receipt) == (b"e" + (b"h1" * 16)[1:], b"receipt:m1")
    assert store.counts()["templates"] == 1
    assert store.counts()["receipts"] == 1


def test_duplicate_inside_one_batch(store: SqlStore) -> None:
    out = store.record_batch([commit("m1", 1, b"h1" * 16), commit("m1", 1, b"h1" * 16)], replayed)
    assert [o.first for o in out] == [True, False]
    assert out[0].receipt == out[1].receipt


def test_sequence_reuse_is_replayed(store: SqlStore) -> None:
    store.record_batch([commit("m1", 1, b"h1" * 16)], replayed)
    out = store.record_batch([commit("m2", 1, b"h2" * 16)], replayed)[0]
    assert out.first
    assert out.reason == "replayed"
    assert out.receipt == b"replayed:m2"
    assert store.get_template("m2") is None  # a rejection stores no template
    # the replay's receipt is itself de-duplicated
    assert store.record_batch([commit("m2", 1, b"h2" * 16)], replayed)[0].receipt == b"replayed:m2"


def test_chain_fork_is_replayed_but_gaps_and_reordering_pass(store: SqlStore) -> None:
    h1, h2, h3 = b"a" * 32, b"b" * 32, b"c" * 32
    # arrives out of order: 3 first (gap), then 1, then 2 (fills the gap, chain consistent)
    assert store.record_batch([commit("m3", 3, h3, prev=h2)], replayed)[0].reason == "match"
    assert store.record_batch([commit("m1", 1, h1)], replayed)[0].reason == "match"
    assert store.record_batch([commit("m2", 2, h2, prev=h1)], replayed)[0].reason == "match"
    # sequence 4 naming a predecessor that is not envelope 3: a fork
    assert store.record_batch([commit("m4", 4, b"d" * 32, prev=h1)], replayed)[0].reason == "replayed"
    # sequence 5 arriving before 4, then a 4 whose hash is not what 5 named: fork
    store.record_batch([commit("m5", 5, b"e" * 32, prev=b"f" * 32)], replayed)
    assert store.record_batch([commit("m4b", 4, b"g" * 32, prev=h3)], replayed)[0].reason == "replayed"
    assert store.last_sequence("t1", "d1", "k1") == 5


def test_non_consuming_commit_leaves_sequence_free(store: SqlStore) -> None:
    out = store.record_batch([commit("m1", None, b"h" * 32, accepted=False)], replayed)[0]
    assert out.first
    assert out.reason == "stale"
    assert store.last_sequence("t1", "d1", "k1") is None


def test_purge(store: SqlStore) -> None:
    old = commit("old", 1, b"a" * 32, t=1000)
    new = commit("new", 2, b"b" * 32, prev=b"a" * 32, t=5000)
    store.record_batch([old, new], replayed)
    counts = store.purge(templates_before_ms=2000, receipts_before_ms=1500)
    assert (counts.templates, counts.receipts, counts.sequences) == (1, 1, 1)
    assert store.get_template("old") is None
    assert store.get_template("new") is not None
    assert store.find_receipt("old") is None
    assert store.find_receipt("new") is not None


def test_concurrent_writers_record_each_message_once(db_target: str) -> None:
    """Several connections (as several receiver processes) race on the same messages."""
    n_workers, n_msgs = 4, 40
    results: list[list[bytes]] = [[] for _ in range(n_workers)]
    firsts: list[int] = [0] * n_workers
    errors: list[BaseException] = []
    open_store(db_target).close()  # migrate once up front
    barrier = threading.Barrier(n_workers)

    def worker(w: int) -> None:
        try:
            s = open_store(db_target, migrate=False)
            try:
                barrier.wait()
                for i in range(0, n_msgs, 4):
                    batch = [replace(commit(f"m{j:03d}", j, bytes([j]) * 32, prev=bytes([j - 1]) * 32),
                                     receipt=f"w{w}:m{j}".encode()) for j in range(i + 1, i + 5)]
                    for r in s.record_batch(batch, replayed):
                        results[w].append(r.receipt)
                        firsts[w] += r.first
            finally:
                s.close()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(n_workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert sum(firsts) == n_msgs  # each message took effect exactly once
    assert all(results[w] == results[0] for w in range(n_workers))  # everyone got the first receipt
    s = open_store(db_target, migrate=False)
    try:
        assert s.counts()["receipts"] == n_msgs
        assert s.counts()["templates"] == n_msgs
    finally:
        s.close()
