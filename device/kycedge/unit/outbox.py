"""Durable store-and-forward queue of sealed envelopes (SQLite, WAL, synchronous=FULL).

The outbox holds only ciphertext: a sealed envelope, its message id, when it was
enqueued, how often it was sent and when it is next due. An envelope leaves the outbox
only through :meth:`Outbox.ack`, which the forwarder calls after the carrier's *signed*
receipt for that message id has been verified, and only for a *final* receipt (the
carrier authenticated the envelope: :attr:`kycedge.protocol.envelope.Receipt.final`).
Until then the forwarder re-sends it with exponential backoff and jitter, oldest first,
never more than ``inflight_window`` at a time awaiting a receipt. A verified
pre-authentication rejection (``unknown-device``, ``undecryptable``...) is noted on the
row with :meth:`Outbox.hold` (its ``condition``, shown in :meth:`Outbox.stats`) and the
envelope stays.

Every write is one transaction in WAL mode, so a ``kill -9`` or a power cut at any point
leaves either the old or the new state, never a half-written row. :meth:`Outbox.put` (the
one thing that cannot be re-derived) commits with ``synchronous=FULL``: when it returns,
the envelope is on stable storage. Bookkeeping (attempts, acks) commits with
``synchronous=NORMAL``: a power cut may forget the latest of those, which costs one more
re-send that the carrier answers with its first receipt (docs/decisions/0005).
Errors from SQLite are converted to :class:`OutboxError` with a stable
``reason``: ``storage-full``, ``read-only``, ``io-error``, ``busy``, ``corrupt``; they are
reported to the caller (the capture that cannot be stored is refused) and never touch
what is already stored. When the configured byte or count bound is reached,
:meth:`Outbox.put` raises :class:`OutboxFullError` with a message for the operator.

Clock jumps: due times are wall-clock (they must survive reboots). A due time further
in the future than ``retry_max_s`` can only come from the clock having jumped back; such
rows are treated as due, so a backwards jump never strands an envelope. A forward jump
makes everything due at once: the receiver is idempotent by message id.

Only the standard library is imported here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sqlite3
import stat
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kycedge.core.config import section
from kycedge.core.errors import IdError, OutboxError, OutboxFullError
from kycedge.core.fsutil import filesystem_full, storage_error
from kycedge.protocol import ids

__all__ = [
    "Ack",
    "Due",
    "Outbox",
    "OutboxConfig",
    "OutboxError",
    "OutboxFullError",
    "OutboxStats",
    "backoff_s",
]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: outbox.condition/condition_at, receipts.score/threshold (v1 migrated in place)
# The receipt retention policy runs on an ack at most every PRUNE_EVERY acks or
# PRUNE_INTERVAL_S seconds (its count query is O(receipts); on every ack it dominated).
PRUNE_EVERY = 1000
PRUNE_INTERVAL_S = 60.0


@dataclass(frozen=True)
class OutboxConfig:
    """[outbox] durable queue of sealed envelopes awaiting the carrier's receipt."""

    max_bytes: int = section(
        256 * 2**20, min=4096, max=64 * 2**30, help="sum of stored envelope sizes before captures are refused"
    )
    max_count: int = section(
        100_000, min=1, max=10_000_000, help="stored envelopes before captures are refused"
    )
    max_envelope_bytes: int = section(
        64 * 1024, min=256, max=16 * 2**20, help="largest single envelope accepted"
    )
    inflight_window: int = section(
        64, min=1, max=10_000, help="envelopes sent and awaiting a receipt at any one time"
    )
    retry_initial_s: float = section(
        10.0, min=0.01, max=3600.0, help="receipt wait after the first send before re-sending"
    )
    retry_max_s: float = section(600.0, min=0.01, max=86_400.0, help="cap of the exponential backoff")
    retry_jitter: float = section(
        0.2, min=0.0, max=1.0, help="fraction of each backoff randomised (full-jitter share)"
    )
    receipt_retention_s: float = section(
        30 * 86_400.0, min=0.0, max=3650 * 86_400.0, help="how long verified receipts are kept for audit"
    )
    receipt_retention_count: int = section(
        100_000, min=0, max=10_000_000, help="most verified receipts kept for audit"
    )
    busy_timeout_s: float = section(5.0, min=0.0, max=600.0, help="wait for a locked database")

    def __post_init__(self) -> None:
        if self.retry_max_s < self.retry_initial_s:
            raise ValueError(
                f"retry_max_s must be >= retry_initial_s ({self.retry_initial_s}), got {self.retry_max_s}"
            )


@dataclass(frozen=True)
class Due:
    """An envelope due for (re-)sending."""

    message_id: str
    envelope: bytes
    attempts: int
    enqueued_at: float


@dataclass(frozen=True)
class Ack:
    """A verified receipt's outcome, recorded when its envelope leaves the outbox."""

    message_id: str
    status: str
    reason: str = ""
    receipt: bytes = b""
    score: float | None = None
    threshold: float | None = None


@dataclass(frozen=True)
class OutboxStats:
    """Figures for status publishing and the operator."""

    count: int
    bytes: int
    max_count: int
    max_bytes: int
    inflight: int
    oldest_enqueued_at: float | None
    max_attempts: int
    receipts: int
    accepted_total: int
    rejected_total: int
    last_error: str
    held: dict[str, int] = field(default_factory=dict)
    last_condition: str = ""

    @property
    def full(self) -> bool:
        return self.count >= self.max_count or self.bytes >= self.max_bytes

    def as_dict(self) -> dict[str, object]:
        return {
            "count": self.count,
            "bytes": self.bytes,
            "max_count": self.max_count,
            "max_bytes": self.max_bytes,
            "inflight": self.inflight,
            "oldest_enqueued_at": self.oldest_enqueued_at,
            "max_attempts": self.max_attempts,
            "receipts": self.receipts,
            "accepted_total": self.accepted_total,
            "rejected_total": self.rejected_total,
            "full": self.full,
            "last_error": self.last_error,
            "held": dict(self.held),
            "last_condition": self.last_condition,
        }


def backoff_s(attempts: int, config: OutboxConfig, rng: random.Random | None = None) -> float:
    """Delay before re-sending an envelope that has been sent ``attempts`` times (>= 1).

    ``retry_initial_s * 2**(attempts-1)`` capped at ``retry_max_s``; the last
    ``retry_jitter`` share of it is drawn uniformly so that a fleet coming back online
    does not re-send in lockstep.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    base = min(config.retry_max_s, config.retry_initial_s * 2.0 ** min(attempts - 1, 60))
    r = (rng or _rng).random()
    return base * (1.0 - config.retry_jitter) + base * config.retry_jitter * r


_rng = random.Random()  # noqa: S311 - jitter, not a secret

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    envelope BLOB NOT NULL,
    size INTEGER NOT NULL,
    enqueued_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_sent_at REAL,
    condition TEXT,
    condition_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_attempt_at, seq);
CREATE TABLE IF NOT EXISTS receipts (
    message_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    received_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    receipt BLOB NOT NULL,
    score REAL,
    threshold REAL
);
CREATE INDEX IF NOT EXISTS receipts_age ON receipts (received_at);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


_V2_COLUMNS = (("outbox", "condition", "TEXT"), ("outbox", "condition_at", "REAL"),
               ("receipts", "score", "REAL"), ("receipts", "threshold", "REAL"))


_SIDE_FILES = ("-wal", "-shm", "-journal")


def _private(path: Path, *, create: bool = False) -> None:
    """Make ``path`` mode 0600 whatever the umask (create it empty if asked and missing)."""
    if create:
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        if stat.S_IMODE(os.stat(path).st_mode) != 0o600:
            os.chmod(path, 0o600)
    except FileNotFoundError:
        pass


_FULL_HINT = "the state filesystem is full; free space (already stored envelopes are safe)"


def _classify(e: sqlite3.Error, path: Path | None = None) -> tuple[str, str]:
    """A stable reason code and an operator hint for an SQLite error.

    SQLite reports a full disk as SQLITE_FULL when a write needs a page, but as a plain
    I/O error when it cannot grow its -wal/-shm (as at start-up): an I/O error on a
    filesystem with no free space is ``storage-full`` too.
    """
    code = getattr(e, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(e).lower()
    if primary == 13 or "disk is full" in text:  # SQLITE_FULL
        return "storage-full", _FULL_HINT
    if (primary == 10 or "i/o" in text) and path is not None and filesystem_full(path):
        return "storage-full", _FULL_HINT
    if primary == 8 or "readonly" in text or "read-only" in text:  # SQLITE_READONLY
        return "read-only", "the state filesystem is read-only; remount it read-write"
    if primary in (5, 6) or "locked" in text:  # SQLITE_BUSY, SQLITE_LOCKED
        return "busy", "the outbox database is locked by another process"
    if primary in (11, 26) or "malformed" in text or "not a database" in text:
        return "corrupt", "the outbox database is damaged; keep the file for recovery"
    if primary == 10 or "i/o" in text:  # SQLITE_IOERR
        return "io-error", "the storage device reported an I/O error"
    if primary == 14 or "unable to open" in text:  # SQLITE_CANTOPEN
        return "cannot-open", "the outbox database cannot be opened (path, permissions)"
    return "outbox-error", "unexpected database error"


class Outbox:
    """The unit's durable queue. Thread-safe; one instance per process.

    >>> ob = Outbox(state_dir / "outbox.sqlite", OutboxConfig())
    >>> ob.put(message_id, sealed_envelope)          # may raise OutboxFullError
    >>> for d in ob.due(time.time(), limit=32): ...   # oldest first, window-bounded
    >>> ob.record_attempts([d.message_id], time.time())
    >>> ob.ack([Ack(message_id, "accepted")])        # only after a verified receipt
    """

    def __init__(
        self,
        path: Path,
        config: OutboxConfig | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.path = Path(path)
        self.config = config or OutboxConfig()
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not a secret
        self._lock = threading.RLock()
        self._last_error = ""
        self._acks_since_prune = 0
        self._next_prune = 0.0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _private(self.path, create=True)  # SQLite gives -wal/-shm the database file's mode
            for side in _SIDE_FILES:
                _private(self.path.with_name(self.path.name + side))
            self._conn = sqlite3.connect(
                str(self.path),
                timeout=self.config.busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
        except OSError as e:
            err = storage_error(e, f"{self.path}: cannot create the outbox database")
            raise OutboxError(err.message, reason=err.reason if err.reason != "storage-error"
                              else "cannot-open") from e
        except sqlite3.Error as e:
            reason, hint = _classify(e, self.path)
            reason = "cannot-open" if reason == "outbox-error" else reason
            raise OutboxError(f"{self.path}: cannot open the outbox database: {e} ({hint})",
                              reason=reason) from e
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            mode = self._conn.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                raise OutboxError(
                    f"{self.path}: expected journal_mode wal, got {mode}", reason="cannot-open"
                )
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            for side in _SIDE_FILES:  # created by now with the database's mode; make sure
                _private(self.path.with_name(self.path.name + side))
            with self._tx():
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        self._conn.execute(stmt)
                row = self._conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
                if row is not None and row[0] == "1":  # v1 -> v2: add the new columns
                    for table, col, kind in _V2_COLUMNS:
                        cols = {r[1] for r in self._conn.execute(f"PRAGMA table_info({table})")}
                        if col not in cols:
                            self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {col} {kind}")
                    self._conn.execute("UPDATE meta SET value=? WHERE key='schema'", (str(SCHEMA_VERSION),))
                    row = (str(SCHEMA_VERSION),)
                if row is None:
                    self._conn.execute(
                        "INSERT INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
                    )
                elif row[0] != str(SCHEMA_VERSION):
                    raise OutboxError(
                        f"{self.path}: expected outbox schema {SCHEMA_VERSION}, got {row[0]}",
                        reason="bad-schema",
                    )
        except OutboxError:
            self._conn.close()
            raise
        except sqlite3.Error as e:
            self._conn.close()
            reason, hint = _classify(e, self.path)
            raise OutboxError(f"{self.path}: cannot open the outbox: {e} ({hint})", reason=reason) from e

    # -- plumbing ---------------------------------------------------------------------

    class _Tx:
        """One write transaction. ``durable=False`` commits with ``synchronous=NORMAL``:
        still atomic (WAL), but a power cut may forget it; used only for bookkeeping that is
        safe to forget (attempts, acks: forgetting one means one more re-send, answered with
        the carrier's first receipt). The next durable commit syncs it anyway."""

        def __init__(self, ob: Outbox, durable: bool) -> None:
            self.ob = ob
            self.durable = durable

        def __enter__(self) -> sqlite3.Connection:
            self.ob._lock.acquire()
            try:
                if not self.durable:
                    self.ob._conn.execute("PRAGMA synchronous=NORMAL")
                self.ob._conn.execute("BEGIN IMMEDIATE")
            except BaseException:
                self._restore()
                self.ob._lock.release()
                raise
            return self.ob._conn

        def _restore(self) -> None:
            if not self.durable:
                try:
                    self.ob._conn.execute("PRAGMA synchronous=FULL")
                except sqlite3.Error:  # pragma: no cover
                    log.error("outbox: cannot restore synchronous=FULL", exc_info=True)

        def __exit__(self, et: object, ev: object, tb: object) -> None:
            try:
                if et is None:
                    try:
                        self.ob._conn.execute("COMMIT")
                    except BaseException:
                        self.ob._rollback()
                        raise
                else:
                    self.ob._rollback()
            finally:
                self._restore()
                self.ob._lock.release()

    def _tx(self, *, durable: bool = True) -> Outbox._Tx:
        return Outbox._Tx(self, durable)

    def _rollback(self) -> None:
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        except sqlite3.Error:  # pragma: no cover - rollback of a failed commit
            log.warning("outbox: rollback failed", exc_info=True)

    def _fail(self, what: str, e: sqlite3.Error) -> OutboxError:
        reason, hint = _classify(e, self.path)
        self._last_error = f"{reason}: {what}: {e}"
        log.error("outbox: %s failed: %s (%s)", what, e, hint)
        return OutboxError(f"outbox {what} failed: {e} ({hint})", reason=reason)

    def close(self) -> None:
        with self._lock:
            try:
                self._conn.close()
            except sqlite3.Error:  # pragma: no cover
                log.warning("outbox: close failed", exc_info=True)

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes -----------------------------------------------------------------------

    def put(self, message_id: str, envelope: bytes, *, now: float | None = None) -> bool:
        """Store a sealed envelope durably (committed and fsynced on return).

        Returns ``True`` when stored, ``False`` when this message id is already stored
        with the same bytes or was already receipted (idempotent re-put after a crash).
        Raises :class:`OutboxFullError` when the byte or count bound would be exceeded
        and :class:`OutboxError` for a bad id, an oversized envelope, an id reused with
        different bytes or a storage failure (``reason`` says which).
        """
        _check_id(message_id)
        if not isinstance(envelope, bytes | bytearray | memoryview):
            raise OutboxError(
                f"expected the envelope as bytes, got {type(envelope).__name__}", reason="bad-envelope"
            )
        data = bytes(envelope)
        if not data:
            raise OutboxError("expected a non-empty sealed envelope, got 0 bytes", reason="bad-envelope")
        cfg = self.config
        if len(data) > cfg.max_envelope_bytes:
            raise OutboxError(
                f"envelope {message_id}: expected at most {cfg.max_envelope_bytes} bytes, got {len(data)}",
                reason="envelope-too-large",
            )
        ts = time.time() if now is None else now
        try:
            with self._tx() as c:
                row = c.execute("SELECT envelope FROM outbox WHERE message_id=?", (message_id,)).fetchone()
                if row is not None:
                    if bytes(row[0]) != data:
                        raise OutboxError(
                            f"message id {message_id} is already queued with different content",
                            reason="duplicate-id",
                        )
                    return False
                if c.execute("SELECT 1 FROM receipts WHERE message_id=?", (message_id,)).fetchone():
                    return False
                count, size = c.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox").fetchone()
                if count + 1 > cfg.max_count or size + len(data) > cfg.max_bytes:
                    raise OutboxFullError(
                        "The outbox is full: "
                        f"{count} of {cfg.max_count} registrations, {size} of {cfg.max_bytes} bytes are "
                        "waiting for the carrier. New captures are refused until the uplink delivers "
                        "them; check the network connection. Nothing stored has been lost."
                    )
                c.execute(
                    "INSERT INTO outbox (message_id, envelope, size, enqueued_at, attempts, next_attempt_at)"
                    " VALUES (?, ?, ?, ?, 0, ?)",
                    (message_id, data, len(data), ts, ts),
                )
        except sqlite3.Error as e:
            raise self._fail("put", e) from e
        self._last_error = ""  # the storage takes writes again
        return True

    def record_attempts(self, message_ids: Iterable[str], now: float | None = None) -> None:
        """Mark envelopes as sent (the broker acknowledged them) at ``now``.

        Each one's next attempt is scheduled ``backoff_s(attempts)`` later: if its receipt
        has not arrived by then it is due again.
        """
        ts = time.time() if now is None else now
        ids = list(message_ids)
        if not ids:
            return
        try:
            with self._tx(durable=False) as c:
                rows: list[tuple[str, int]] = []
                for start in range(0, len(ids), 500):
                    chunk = ids[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    rows += c.execute(
                        f"SELECT message_id, attempts FROM outbox WHERE message_id IN ({marks})",  # noqa: S608
                        chunk,
                    ).fetchall()
                c.executemany(
                    "UPDATE outbox SET attempts=?, last_sent_at=?, next_attempt_at=? WHERE message_id=?",
                    [(int(n) + 1, ts, ts + backoff_s(int(n) + 1, self.config, self._rng), mid)
                     for mid, n in rows],
                )
        except sqlite3.Error as e:
            raise self._fail("record attempt", e) from e

    def record_attempt(self, message_id: str, now: float | None = None) -> None:
        self.record_attempts([message_id], now)

    def reschedule_inflight(self, now: float | None = None) -> int:
        """Make every sent-but-unreceipted envelope due now (after a reconnect).

        A broker restarted without persistence forgets what it had queued; re-sending at
        once (the receiver de-duplicates) beats waiting out the backoff. Returns how many.
        """
        ts = time.time() if now is None else now
        try:
            with self._tx() as c:
                cur = c.execute(
                    "UPDATE outbox SET next_attempt_at=? WHERE attempts > 0 AND next_attempt_at > ?", (ts, ts)
                )
                return int(cur.rowcount)
        except sqlite3.Error as e:
            raise self._fail("reschedule", e) from e

    def ack(self, acks: Sequence[Ack], now: float | None = None) -> list[str]:
        """Remove envelopes whose carrier receipt has been *verified* by the caller.

        Records each receipt (for audit, subject to retention) and returns the message ids
        that were actually removed; an id not in the outbox (a duplicate receipt) is
        ignored. Call this only with receipts whose signature was checked.
        """
        ts = time.time() if now is None else now
        removed: list[str] = []
        if not acks:
            return removed
        try:
            with self._tx(durable=False) as c:
                attempts: dict[str, int] = {}
                ids = list(dict.fromkeys(a.message_id for a in acks))
                for start in range(0, len(ids), 500):
                    chunk = ids[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    attempts.update(c.execute(
                        f"SELECT message_id, attempts FROM outbox WHERE message_id IN ({marks})",  # noqa: S608
                        chunk,
                    ).fetchall())
                rows = []
                counts = {"accepted": 0, "rejected": 0}
                for a in acks:
                    n = attempts.pop(a.message_id, None)
                    if n is None:  # not queued (any more), or a repeat within this batch
                        continue
                    rows.append((a.message_id, a.status, a.reason, ts, int(n), bytes(a.receipt), a.score,
                                 a.threshold))
                    counts["accepted" if a.status == "accepted" else "rejected"] += 1
                    removed.append(a.message_id)
                c.executemany("DELETE FROM outbox WHERE message_id=?", [(r[0],) for r in rows])
                c.executemany(
                    "INSERT OR REPLACE INTO receipts (message_id, status, reason, received_at, attempts,"
                    " receipt, score, threshold) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                for name, k in counts.items():
                    if k:
                        c.execute(
                            "INSERT INTO counters (name, value) VALUES (?, ?)"
                            " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                            (name, k),
                        )
                self._acks_since_prune += len(removed)
                if self._acks_since_prune >= PRUNE_EVERY or ts >= self._next_prune:
                    self._prune_receipts(c, ts)
        except sqlite3.Error as e:
            raise self._fail("ack", e) from e
        return removed

    def hold(self, conditions: Sequence[tuple[str, str]], now: float | None = None) -> list[str]:
        """Note verified *pre-authentication* rejections: ``(message_id, reason)`` pairs.

        The envelope stays queued and keeps its backoff schedule (the next re-send is the
        one :meth:`record_attempts` scheduled); its ``condition`` (the carrier's reason) is
        shown in :meth:`stats` until a final receipt removes it. Returns the ids still queued.
        """
        ts = time.time() if now is None else now
        held: list[str] = []
        if not conditions:
            return held
        try:
            with self._tx(durable=False) as c:
                for mid, reason in conditions:
                    cur = c.execute("UPDATE outbox SET condition=?, condition_at=? WHERE message_id=?",
                                    (reason, ts, mid))
                    if cur.rowcount:
                        held.append(mid)
        except sqlite3.Error as e:
            raise self._fail("hold", e) from e
        return held

    def _prune_receipts(self, c: sqlite3.Connection, now: float) -> None:
        self._acks_since_prune = 0
        self._next_prune = now + PRUNE_INTERVAL_S
        cfg = self.config
        c.execute("DELETE FROM receipts WHERE received_at < ?", (now - cfg.receipt_retention_s,))
        c.execute(
            "DELETE FROM receipts WHERE message_id IN (SELECT message_id FROM receipts"
            " ORDER BY received_at DESC, rowid DESC LIMIT -1 OFFSET ?)",
            (cfg.receipt_retention_count,),
        )

    def prune_receipts(self, now: float | None = None) -> None:
        """Apply the receipt retention policy now (also done on every ack)."""
        ts = time.time() if now is None else now
        try:
            with self._tx() as c:
                self._prune_receipts(c, ts)
        except sqlite3.Error as e:
            raise self._fail("prune receipts", e) from e

    # -- reads ------------------------------------------------------------------------

    def due(self, now: float | None = None, limit: int | None = None) -> list[Due]:
        """Envelopes to send now, oldest first, at most the free in-flight slots.

        In flight = sent, unreceipted and not yet due again. A due time beyond
        ``now + retry_max_s`` means the clock jumped back: that row counts as due.
        """
        ts = time.time() if now is None else now
        horizon = ts + self.config.retry_max_s
        try:
            with self._lock:
                inflight = self._conn.execute(
                    "SELECT COUNT(*) FROM outbox WHERE attempts > 0 AND next_attempt_at > ?"
                    " AND next_attempt_at <= ?",
                    (ts, horizon),
                ).fetchone()[0]
                free = self.config.inflight_window - int(inflight)
                if limit is not None:
                    free = min(free, limit)
                if free <= 0:
                    return []
                rows = self._conn.execute(
                    "SELECT message_id, envelope, attempts, enqueued_at FROM outbox"
                    " WHERE next_attempt_at <= ? OR next_attempt_at > ? ORDER BY seq LIMIT ?",
                    (ts, horizon, free),
                ).fetchall()
        except sqlite3.Error as e:
            raise self._fail("read due", e) from e
        return [Due(str(r[0]), bytes(r[1]), int(r[2]), float(r[3])) for r in rows]

    def next_due_at(self, now: float | None = None) -> float | None:
        """When the earliest stored envelope is due (``None`` if the outbox is empty)."""
        ts = time.time() if now is None else now
        try:
            with self._lock:
                row = self._conn.execute("SELECT MIN(next_attempt_at) FROM outbox").fetchone()
        except sqlite3.Error as e:
            raise self._fail("read due time", e) from e
        if row is None or row[0] is None:
            return None
        t = float(row[0])
        return ts if t > ts + self.config.retry_max_s else t

    def contains(self, message_id: str) -> bool:
        try:
            with self._lock:
                return (
                    self._conn.execute("SELECT 1 FROM outbox WHERE message_id=?", (message_id,)).fetchone()
                    is not None
                )
        except sqlite3.Error as e:
            raise self._fail("lookup", e) from e

    def condition(self, message_id: str) -> str | None:
        """The carrier's pre-authentication reason noted on a queued envelope (:meth:`hold`),
        ``""`` when none, ``None`` when the message id is not queued."""
        try:
            with self._lock:
                row = self._conn.execute("SELECT condition FROM outbox WHERE message_id=?",
                                         (message_id,)).fetchone()
        except sqlite3.Error as e:
            raise self._fail("lookup", e) from e
        return None if row is None else str(row[0] or "")

    def receipt(self, message_id: str) -> Ack | None:
        """The recorded outcome for a receipted message id (while retained)."""
        try:
            with self._lock:
                row = self._conn.execute(
                    "SELECT status, reason, receipt, score, threshold FROM receipts WHERE message_id=?",
                    (message_id,),
                ).fetchone()
        except sqlite3.Error as e:
            raise self._fail("lookup receipt", e) from e
        if row is None:
            return None
        return Ack(message_id, str(row[0]), str(row[1]), bytes(row[2]), row[3], row[4])

    def message_ids(self) -> list[str]:
        """All stored message ids, oldest first (for tools and tests)."""
        try:
            with self._lock:
                return [str(r[0]) for r in self._conn.execute("SELECT message_id FROM outbox ORDER BY seq")]
        except sqlite3.Error as e:
            raise self._fail("list", e) from e

    def stats(self, now: float | None = None) -> OutboxStats:
        ts = time.time() if now is None else now
        try:
            with self._lock:
                c = self._conn
                count, size, oldest, max_att = c.execute(
                    "SELECT COUNT(*), COALESCE(SUM(size), 0), MIN(enqueued_at), COALESCE(MAX(attempts), 0)"
                    " FROM outbox"
                ).fetchone()
                inflight = c.execute(
                    "SELECT COUNT(*) FROM outbox WHERE attempts > 0 AND next_attempt_at > ?"
                    " AND next_attempt_at <= ?",
                    (ts, ts + self.config.retry_max_s),
                ).fetchone()[0]
                receipts = c.execute("SELECT COUNT(*) FROM receipts").fetchone()[0]
                counters = dict(c.execute("SELECT name, value FROM counters").fetchall())
                held = dict(c.execute(
                    "SELECT condition, COUNT(*) FROM outbox WHERE condition IS NOT NULL GROUP BY condition"
                ).fetchall())
                last = c.execute(
                    "SELECT condition FROM outbox WHERE condition IS NOT NULL"
                    " ORDER BY condition_at DESC, seq DESC LIMIT 1"
                ).fetchone()
        except sqlite3.Error as e:
            raise self._fail("stats", e) from e
        full = not self._last_error and filesystem_full(self.path)  # whoever hit it (the sealer...)
        return OutboxStats(
            count=int(count),
            bytes=int(size),
            max_count=self.config.max_count,
            max_bytes=self.config.max_bytes,
            inflight=int(inflight),
            oldest_enqueued_at=None if oldest is None else float(oldest),
            max_attempts=int(max_att),
            receipts=int(receipts),
            accepted_total=int(counters.get("accepted", 0)),
            rejected_total=int(counters.get("rejected", 0)),
            last_error=self._last_error or (f"storage-full: {_FULL_HINT}" if full else ""),
            held={str(k): int(v) for k, v in held.items()},
            last_condition="" if last is None else str(last[0]),
        )


def _check_id(message_id: str) -> None:
    try:
        ids.check_message_id_text(message_id)
    except IdError as e:
        raise OutboxError(e.message, reason="bad-message-id") from e
