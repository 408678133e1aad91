"""The durable outbox: bounds, ordering, backoff, receipts, storage faults, kill -9."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kycedge.core.config import from_mapping
from kycedge.core.errors import ConfigError
from kycedge.unit.outbox import Ack, Outbox, OutboxConfig, OutboxError, OutboxFullError, backoff_s
from support.ids import T0_MS, M

T0 = 1_800_000_000.0



def cfg(**kw: object) -> OutboxConfig:
    base: dict[str, object] = {"retry_initial_s": 10.0, "retry_max_s": 100.0, "retry_jitter": 0.0}
    base.update(kw)
    return from_mapping(OutboxConfig, base)


@pytest.fixture
def ob(tmp_path: Path) -> Outbox:
    o = Outbox(tmp_path / "outbox.sqlite", cfg(), rng=random.Random(1))
    yield o
    o.close()


def test_wal_and_full_sync(ob: Outbox) -> None:
    c = sqlite3.connect(ob.path)
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert ob._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    c.close()


def test_put_due_oldest_first_and_ack(ob: Outbox) -> None:
    for i in range(5):
        assert ob.put(M(f"m{i}"), b"ct%d" % i, now=T0 + i)
    due = ob.due(T0 + 10, limit=3)
    assert [d.message_id for d in due] == [M("m0"), M("m1"), M("m2")]
    assert due[0].envelope == b"ct0"
    assert due[0].attempts == 0
    ob.record_attempts([M("m0"), M("m1"), M("m2")], T0 + 10)
    # sent ones are in flight until their backoff expires
    assert [d.message_id for d in ob.due(T0 + 11)] == [M("m3"), M("m4")]
    assert ob.stats(T0 + 11).inflight == 3
    assert ob.ack([Ack(M("m1"), "accepted", "", b"sig")], now=T0 + 12) == [M("m1")]
    assert not ob.contains(M("m1"))
    assert ob.receipt(M("m1")) == Ack(M("m1"), "accepted", "", b"sig")
    # after the receipt wait (10 s, no jitter) the others are due again, oldest first
    assert [d.message_id for d in ob.due(T0 + 20.5)] == [M("m0"), M("m2"), M("m3"), M("m4")]


def test_duplicate_receipt_and_reput_are_idempotent(ob: Outbox) -> None:
    assert ob.put(M("a"), b"x", now=T0)
    assert ob.put(M("a"), b"x", now=T0) is False
    with pytest.raises(OutboxError) as ei:
        ob.put(M("a"), b"y", now=T0)
    assert ei.value.reason == "duplicate-id"
    assert ob.ack([Ack(M("a"), "accepted")]) == [M("a")]
    assert ob.ack([Ack(M("a"), "accepted")]) == []
    # a re-put after the receipt (crash between ack and caller bookkeeping) stores nothing
    assert ob.put(M("a"), b"x") is False
    assert ob.stats().count == 0
    assert ob.stats().accepted_total == 1


def test_inflight_window_bounds_due(tmp_path: Path) -> None:
    o = Outbox(tmp_path / "o.sqlite", cfg(inflight_window=4))
    for i in range(10):
        o.put(M(f"m{i:02d}"), b"c", now=T0)
    first = o.due(T0)
    assert len(first) == 4
    o.record_attempts([d.message_id for d in first], T0)
    assert o.due(T0 + 1) == []
    o.ack([Ack(M("m00"), "accepted"), Ack(M("m01"), "rejected", "replay")], T0 + 1)
    assert [d.message_id for d in o.due(T0 + 1)] == [M("m04"), M("m05")]
    st_ = o.stats(T0 + 1)
    assert (st_.accepted_total, st_.rejected_total, st_.count) == (1, 1, 8)


def test_backoff_is_exponential_capped_and_jittered() -> None:
    c = cfg(retry_initial_s=1.0, retry_max_s=30.0, retry_jitter=0.5)
    rng = random.Random(7)
    for n in range(1, 12):
        base = min(30.0, 2.0 ** (n - 1))
        for _ in range(20):
            d = backoff_s(n, c, rng)
            assert base * 0.5 <= d <= base
    vals = {round(backoff_s(3, c, rng), 6) for _ in range(10)}
    assert len(vals) > 1  # jitter spreads retries


def test_backoff_grows_with_attempts(ob: Outbox) -> None:
    ob.put(M("m"), b"c", now=T0)
    t = T0
    waits = []
    for _ in range(5):
        ob.record_attempts([M("m")], t)
        nxt = ob.next_due_at(t)
        assert nxt is not None
        waits.append(nxt - t)
        t = nxt
    assert waits == [10.0, 20.0, 40.0, 80.0, 100.0]


def test_clock_jump_back_does_not_strand(ob: Outbox) -> None:
    ob.put(M("m"), b"c", now=T0)
    ob.record_attempts([M("m")], T0)
    assert ob.due(T0 + 1) == []
    # the clock jumps back a day: the stored due time is absurdly far ahead
    back = T0 - 86_400
    assert [d.message_id for d in ob.due(back)] == [M("m")]
    assert ob.next_due_at(back) == back
    # and forward a day: due as well
    assert [d.message_id for d in ob.due(T0 + 86_400)] == [M("m")]


def test_reschedule_inflight(ob: Outbox) -> None:
    ob.put(M("m"), b"c", now=T0)
    ob.record_attempts([M("m")], T0)
    assert ob.reschedule_inflight(T0 + 1) == 1
    assert [d.attempts for d in ob.due(T0 + 1)] == [1]


def test_full_by_count_and_bytes(tmp_path: Path) -> None:
    o = Outbox(tmp_path / "o.sqlite", cfg(max_count=3, max_bytes=4096, max_envelope_bytes=4096))
    for i in range(3):
        o.put(M(f"m{i}"), b"x" * 10)
    with pytest.raises(OutboxFullError) as ei:
        o.put(M("m3"), b"x")
    assert ei.value.reason == "outbox-full"
    assert "3 of 3 registrations" in ei.value.message
    assert "refused" in ei.value.message
    o.ack([Ack(M("m0"), "accepted")])
    o.put(M("m3"), b"x" * 10)
    o2 = Outbox(tmp_path / "o2.sqlite", cfg(max_bytes=4096, max_envelope_bytes=4096))
    o2.put(M("a"), b"x" * 4000)
    with pytest.raises(OutboxFullError, match="4000 of 4096 bytes"):
        o2.put(M("b"), b"x" * 100)
    assert o2.stats().full is False
    assert o2.stats().bytes == 4000


def test_rejects_bad_input(ob: Outbox) -> None:
    for bad in ["", "a\nb", "x" * 200]:
        with pytest.raises(OutboxError) as ei:
            ob.put(bad, b"c")
        assert ei.value.reason == "bad-message-id"
    with pytest.raises(OutboxError) as ei:
        ob.put(M("m"), b"")
    assert ei.value.reason == "bad-envelope"
    with pytest.raises(OutboxError) as ei:
        ob.put(M("m"), b"x" * (64 * 1024 + 1))
    assert ei.value.reason == "envelope-too-large"
    assert "65537" in ei.value.message


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="outbox_typo"):
        from_mapping(OutboxConfig, {"outbox_typo": 1})
    with pytest.raises(ConfigError, match="retry_max_s"):
        from_mapping(OutboxConfig, {"retry_initial_s": 10.0, "retry_max_s": 1.0})
    with pytest.raises(ConfigError, match=r"max_count: expected an integer in \[1, 10000000\], got 0"):
        from_mapping(OutboxConfig, {"max_count": 0})


def test_receipt_retention(tmp_path: Path) -> None:
    o = Outbox(tmp_path / "o.sqlite", cfg(receipt_retention_s=100.0, receipt_retention_count=3))
    for i in range(5):
        o.put(M(f"m{i}"), b"c")
        o.ack([Ack(M(f"m{i}"), "accepted")], now=T0 + i)
    o.prune_receipts(T0 + 5)
    assert o.stats().receipts == 3
    assert o.receipt(M("m0")) is None
    assert o.receipt(M("m4")) is not None
    # the policy also runs by itself on a later ack (at most every minute / 1000 acks)
    o.put(M("late"), b"c")
    o.ack([Ack(M("late"), "accepted")], now=T0 + 1000)
    assert o.stats().receipts == 1
    o.prune_receipts(T0 + 2000)
    assert o.stats().receipts == 0
    assert o.stats().accepted_total == 6


def test_bookkeeping_commits_do_not_leave_synchronous_lowered(ob: Outbox) -> None:
    ob.put(M("m"), b"c")
    ob.record_attempts([M("m")])
    ob.ack([Ack(M("m"), "accepted")])
    assert ob._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL again for puts


def test_disk_full_is_reported_and_stored_data_survives(ob: Outbox) -> None:
    for i in range(3):
        ob.put(M(f"m{i}"), b"c" * 100)
    pages = ob._conn.execute("PRAGMA page_count").fetchone()[0]
    ob._conn.execute(f"PRAGMA max_page_count={pages}")  # the filesystem is now "full"
    def fill() -> None:
        for i in range(3, 200):
            ob.put(M(f"m{i}"), os.urandom(3000))

    with pytest.raises(OutboxError) as ei:
        fill()
    assert ei.value.reason == "storage-full"
    assert "free space" in ei.value.message
    assert "storage-full" in ob.stats().last_error
    stored = ob.message_ids()
    assert stored[:3] == [M("m0"), M("m1"), M("m2")]
    assert [d.message_id for d in ob.due(limit=3)] == [M("m0"), M("m1"), M("m2")]
    ob._conn.execute("PRAGMA max_page_count=1073741823")
    ob.put(M("after"), b"c")
    assert ob.contains(M("after"))


def test_read_only_is_reported_and_not_fatal(ob: Outbox) -> None:
    ob.put(M("m0"), b"c")
    ob._conn.execute("PRAGMA query_only=1")
    with pytest.raises(OutboxError) as ei:
        ob.put(M("m1"), b"c")
    assert ei.value.reason == "read-only"
    with pytest.raises(OutboxError) as ei:
        ob.ack([Ack(M("m0"), "accepted")])
    assert ei.value.reason == "read-only"
    assert ob.message_ids() == [M("m0")]
    ob._conn.execute("PRAGMA query_only=0")
    assert ob.ack([Ack(M("m0"), "accepted")]) == [M("m0")]


def test_not_a_database(tmp_path: Path) -> None:
    p = tmp_path / "junk.sqlite"
    p.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(OutboxError) as ei:
        Outbox(p, cfg())
    assert ei.value.reason == "corrupt"


def test_survives_reopen(tmp_path: Path) -> None:
    p = tmp_path / "o.sqlite"
    o = Outbox(p, cfg())
    o.put(M("m0"), b"c0", now=T0)
    o.record_attempts([M("m0")], T0)
    o.close()
    o = Outbox(p, cfg())
    assert o.message_ids() == [M("m0")]
    assert o.stats(T0 + 1).inflight == 1


_WRITER = r"""
import sys, time
from pathlib import Path
from kycedge.unit.outbox import Outbox, OutboxConfig, Ack
from kycedge.protocol.ids import new_message_id
def M(name):
    raw = name.encode().ljust(8, b"\0")
    return str(new_message_id(now_ms=T0_MS_VALUE, random_bytes=b"\0" + raw[:1] + b"\0" + raw[1:]))
ob = Outbox(Path(sys.argv[1]), OutboxConfig(max_count=10_000_000))
i = 0
while True:
    ob.put(M(f"m{i:07d}"), b"ct" * 50)
    print(f"P {i}", flush=True)
    if i % 3 == 0:
        ob.ack([Ack(M(f"m{i:07d}"), "accepted")])
        print(f"A {i}", flush=True)
    i += 1
"""


@pytest.mark.slow
def test_kill_9_mid_write_loses_nothing_committed(tmp_path: Path) -> None:
    db = tmp_path / "o.sqlite"
    for trial in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER.replace("T0_MS_VALUE", str(T0_MS)), str(db)],
            stdout=subprocess.PIPE, text=True,
        )
        time.sleep(0.6 + 0.3 * trial)
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        ob = Outbox(db, OutboxConfig(max_count=10_000_000))
        stored = set(ob.message_ids())
        put = [int(line[2:]) for line in out.splitlines() if line.startswith("P ")]
        acked = {int(line[2:]) for line in out.splitlines() if line.startswith("A ")}
        assert put, "the writer made no progress"
        for i in put:
            mid = M(f"m{i:07d}")
            if i in acked:
                assert mid not in stored
            elif i % 3 != 0:
                assert mid in stored
        ob.close()
        db.unlink()
        for suffix in ("-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["put", "send", "ack"]), st.integers(0, 15)), max_size=60
    )
)
def test_model_based_put_send_ack(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int]]
) -> None:
    d = tmp_path_factory.mktemp("prop")
    o = Outbox(d / "o.sqlite", cfg(inflight_window=5, max_count=1000))
    model: dict[str, int] = {}
    order: list[str] = []
    done: set[str] = set()
    now = T0
    for op, k in ops:
        mid = M(f"m{k}")
        now += 1
        if op == "put":
            stored = o.put(mid, b"c", now=now)
            assert stored == (mid not in model and mid not in done)
            if stored:
                model[mid] = 0
                order.append(mid)
        elif op == "send":
            due = o.due(now)
            ids = [x.message_id for x in due]
            assert ids == [m for m in order if m in ids]  # oldest first
            assert len(ids) <= 5
            o.record_attempts(ids, now)
        else:
            assert o.ack([Ack(mid, "accepted")], now) == ([mid] if mid in model else [])
            if mid in model:
                del model[mid]
                order.remove(mid)
                done.add(mid)
        assert o.message_ids() == order
    o.close()


def test_hold_keeps_the_envelope_and_shows_the_condition(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite", OutboxConfig(retry_initial_s=1.0, retry_max_s=4.0, retry_jitter=0.0))
    ob.put(M("m1"), b"e1", now=100.0)
    ob.put(M("m2"), b"e2", now=100.0)
    ob.record_attempts([M("m1"), M("m2")], 100.0)
    assert ob.hold([(M("m1"), "unknown-device"), (M("gone"), "undecryptable")], 100.5) == [M("m1")]
    st = ob.stats(100.5)
    assert (st.count, st.held, st.last_condition) == (2, {"unknown-device": 1}, "unknown-device")
    assert [d.message_id for d in ob.due(101.0)] == [M("m1"), M("m2")]  # the backoff schedule is kept
    ob.ack([Ack(M("m1"), "accepted", "accepted")], 102.0)
    assert ob.stats(102.0).held == {}


def test_schema_1_file_is_migrated_in_place(tmp_path: Path) -> None:
    import sqlite3

    p = tmp_path / "o.sqlite"
    ob = Outbox(p)
    ob.put(M("m1"), b"e1")
    ob.close()
    c = sqlite3.connect(p)  # make it a version-1 file (no condition columns)
    c.executescript("UPDATE meta SET value='1' WHERE key='schema'; ALTER TABLE receipts DROP COLUMN score;"
                    "ALTER TABLE outbox DROP COLUMN condition; ALTER TABLE outbox DROP COLUMN condition_at;")
    c.close()
    ob = Outbox(p)
    assert ob.message_ids() == [M("m1")]
    assert ob.hold([(M("m1"), "undecryptable")]) == [M("m1")]
    assert ob.stats().held == {"undecryptable": 1}


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_database_wal_and_shm_are_0600_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    """Issue 10 item 13: they were created 0644 under umask 022 (0666 under 000)."""
    import stat as st_mod

    old = os.umask(umask)
    try:
        p = tmp_path / "state" / "outbox.sqlite"
        ob = Outbox(p)
        ob.put(M("m1"), b"ciphertext")
        modes = {f.name: st_mod.S_IMODE(f.stat().st_mode) for f in p.parent.iterdir()}
        ob.close()
        assert {"outbox.sqlite", "outbox.sqlite-wal", "outbox.sqlite-shm"} <= set(modes)
        assert set(modes.values()) == {0o600}, modes
        p.chmod(0o644)  # a file left by an older version is tightened on open
        Outbox(p).close()
        assert st_mod.S_IMODE(p.stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_a_full_filesystem_is_storage_full_and_nothing_is_lost(small_fs) -> None:  # type: ignore[no-untyped-def]
    """Issue 10 item 12 on a real full filesystem (a 1 MiB tmpfs): the put that does not fit
    says storage-full (so does queue.last_error), what was stored survives, and so does a
    restart on the full disk (which said "disk I/O error" before)."""
    path = small_fs.root / "state" / "outbox.sqlite"
    ob = Outbox(path, cfg())
    stored = []
    for i in range(5):
        ob.put(M(f"m{i}"), os.urandom(3000))
        stored.append(M(f"m{i}"))
    small_fs.fill()

    def fill_up() -> None:
        for i in range(5, 400):
            ob.put(M(f"n{i}"), os.urandom(3000))
            stored.append(M(f"n{i}"))

    with pytest.raises(OutboxError) as ei:
        fill_up()
    assert ei.value.reason == "storage-full"
    assert "free space" in ei.value.message
    assert ob.stats().last_error.startswith("storage-full")
    assert ob.message_ids() == stored
    ob.close()
    # the -shm index is rebuilt on open (the -wal is data: kept); rebuilding it needs space
    (path.parent / (path.name + "-shm")).unlink(missing_ok=True)
    try:
        ob = Outbox(path, cfg())  # start-up on the full disk
    except OutboxError as e:
        assert e.reason == "storage-full", e.message  # noqa: PT017
    else:
        assert ob.message_ids() == stored
        ob.close()
    with pytest.raises(OutboxError) as fresh:  # a first start on a full disk
        Outbox(small_fs.root / "fresh" / "outbox.sqlite", cfg())
    assert fresh.value.reason == "storage-full", fresh.value.message
    small_fs.free()
    ob = Outbox(path, cfg())
    assert ob.message_ids() == stored
    ob.put(M("after"), b"fits again")
    ob.close()
