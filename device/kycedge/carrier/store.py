"""Carrier storage: one schema, versioned migrations, two backends.

The SQL here is written once, with ``?`` placeholders and portable types spelled as
``{blob}`` / ``{real}`` / ``{bigint}`` tokens that each backend fills in
(:mod:`kycedge.carrier.store_sqlite`, :mod:`kycedge.carrier.store_pg`); the schema and record
types are in :mod:`kycedge.carrier.store_schema`. Both backends speak DB-API
through a tiny seam (``_exec``), run in autocommit mode and open explicit transactions,
so the transaction boundaries are visible in this file.

Concurrency model (several receiver processes on one database):

* de-duplication is the ``receipts.message_id`` PRIMARY KEY, written with
  ``INSERT ... ON CONFLICT DO NOTHING``; the loser of a race reads the winner's receipt;
* the per-device sequence is the ``sequences`` PRIMARY KEY ``(tenant, device_id,
  key_id, seq)``; a second message id with a used sequence number is a replay;
* a conflict is answered, never raised: ``ON CONFLICT DO NOTHING`` leaves the batch's
  transaction usable, so one duplicate never aborts the rest of the batch; SQLite takes
  the write lock up front (``BEGIN IMMEDIATE``).

Nothing here checks-then-inserts without a unique constraint behind it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from kycedge.carrier.store_schema import (
    MIGRATIONS,
    Commit,
    ConflictHandler,
    DeviceRecord,
    Migration,
    PurgeCounts,
    Recorded,
    ReferenceRecord,
    StoredReceipt,
    StoredTemplate,
    TemplateRow,
)
from kycedge.errors import CarrierError

__all__ = [
    "MIGRATIONS",
    "Commit",
    "DeviceRecord",
    "Migration",
    "PurgeCounts",
    "Recorded",
    "ReferenceRecord",
    "SqlStore",
    "StoredReceipt",
    "StoredTemplate",
    "TemplateRow",
    "open_store",
]

class SqlStore:
    """The storage logic, shared by both backends. Subclasses provide the connection."""

    backend: str = "sql"
    _types: ClassVar[dict[str, str]] = {}

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        # One connection, one transaction at a time: a store (and so a Receiver) may be
        # shared by threads; separate processes each open their own store.
        self._lock = threading.RLock()

    # -- the backend seam ---------------------------------------------------------------

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _begin(self) -> None:  # pragma: no cover
        raise NotImplementedError

    def _lock_migrations(self) -> None:
        """Serialise concurrent migration runners (inside the open transaction)."""

    def _wrap(self, e: Exception, what: str) -> CarrierError:  # pragma: no cover
        return CarrierError(f"{self.backend}: {what} failed: {e}")

    def _is_backend_error(self, e: Exception) -> bool:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a broken connection
            self._conn.close()

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions -----------------------------------------------------------------

    def _is_retryable(self, e: Exception) -> bool:
        """A transient conflict (deadlock, serialization failure, busy) worth one more try."""
        return False

    def _run(self, what: str, fn: Callable[[], Any], attempts: int = 3) -> Any:
        """Run ``fn`` in one transaction; backend errors become CarrierError.

        Transient conflicts are retried (the whole transaction) up to ``attempts`` times.
        """
        with self._lock:
            return self._run_locked(what, fn, attempts)

    def _run_locked(self, what: str, fn: Callable[[], Any], attempts: int) -> Any:
        for attempt in range(attempts):
            try:
                self._begin()
                try:
                    out = fn()
                except BaseException:
                    self._rollback()
                    raise
                self._exec("COMMIT")
                return out
            except CarrierError:
                raise
            except Exception as e:
                if not self._is_backend_error(e):
                    raise
                if attempt + 1 < attempts and self._is_retryable(e):
                    continue
                raise self._wrap(e, what) from e
        raise AssertionError("unreachable")  # pragma: no cover

    def _rollback(self) -> None:
        try:
            self._exec("ROLLBACK")
        except Exception as e:  # the connection may already have rolled back
            if not self._is_backend_error(e):
                raise

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._exec(sql, params).fetchone()

    # -- schema -----------------------------------------------------------------------

    def migrate(self) -> int:
        """Apply pending migrations in one transaction; return the schema version."""

        def apply() -> int:
            self._lock_migrations()
            self._exec(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                "version INTEGER NOT NULL PRIMARY KEY, description TEXT NOT NULL, "
                f"applied_at_ms {self._types['bigint']} NOT NULL)"
            )
            row = self._one("SELECT MAX(version) FROM schema_version")
            current = int(row[0]) if row and row[0] is not None else 0
            latest = MIGRATIONS[-1].version
            if current > latest:
                raise CarrierError(
                    f"{self.backend}: database schema version {current} is newer than this "
                    f"software (expected at most {latest}); upgrade kycedge"
                )
            for m in MIGRATIONS:
                if m.version <= current:
                    continue
                for stmt in m.statements:
                    self._exec(stmt.format(**self._types))
                self._exec(
                    "INSERT INTO schema_version (version, description, applied_at_ms) VALUES (?, ?, ?)",
                    (m.version, m.description, now_ms()),
                )
                current = m.version
            return current

        out: int = self._run("migration", apply)
        return out

    def schema_version(self) -> int:
        def read() -> int:
            try:
                row = self._one("SELECT MAX(version) FROM schema_version")
            except Exception as e:
                if self._is_backend_error(e):
                    return -1
                raise
            return int(row[0]) if row and row[0] is not None else 0

        version: int = self._read("schema read", read)
        return version

    def require_schema(self) -> None:
        version = self.schema_version()
        latest = MIGRATIONS[-1].version
        if version != latest:
            raise CarrierError(
                f"{self.backend}: expected schema version {latest}, got {version}; "
                "run `kycedge-carrier db migrate`"
            )

    # -- device registry --------------------------------------------------------------

    def put_device(self, rec: DeviceRecord) -> None:
        def ins() -> None:
            cur = self._exec(
                "INSERT INTO devices (tenant, device_id, key_id, public_key, status, enrolled_at_ms, "
                "revoked_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (rec.tenant, rec.device_id, rec.key_id, rec.public_key, rec.status,
                 rec.enrolled_at_ms, rec.revoked_at_ms),
            )
            if cur.rowcount != 1:
                row = self._one(
                    "SELECT tenant, device_id, status FROM devices WHERE public_key = ?", (rec.public_key,)
                )
                where = f" as {row[0]}/{row[1]} ({row[2]})" if row else ""
                raise CarrierError(
                    f"device {rec.tenant}/{rec.device_id} key {rec.key_id}: expected a new key, got one "
                    f"already enrolled{where}; a key identifies one unit: make the unit a new key "
                    "(kycedge keys init on a fresh state dir) and enrol that",
                    reason="already-enrolled",
                )

        self._run("device enrol", ins)

    def get_device(self, tenant: str, device_id: str, key_id: str) -> DeviceRecord | None:
        def get() -> DeviceRecord | None:
            row = self._one(
                "SELECT tenant, device_id, key_id, public_key, status, enrolled_at_ms, revoked_at_ms "
                "FROM devices WHERE tenant = ? AND device_id = ? AND key_id = ?",
                (tenant, device_id, key_id),
            )
            return _device(row) if row else None

        out: DeviceRecord | None = self._read("device lookup", get)
        return out

    def list_devices(self, tenant: str | None = None) -> list[DeviceRecord]:
        def get() -> list[DeviceRecord]:
            if tenant is None:
                rows = self._exec(
                    "SELECT tenant, device_id, key_id, public_key, status, enrolled_at_ms, revoked_at_ms "
                    "FROM devices ORDER BY tenant, device_id, enrolled_at_ms"
                ).fetchall()
            else:
                rows = self._exec(
                    "SELECT tenant, device_id, key_id, public_key, status, enrolled_at_ms, revoked_at_ms "
                    "FROM devices WHERE tenant = ? ORDER BY device_id, enrolled_at_ms",
                    (tenant,),
                ).fetchall()
            return [_device(r) for r in rows]

        out: list[DeviceRecord] = self._read("device list", get)
        return out

    def revoke_device(self, tenant: str, device_id: str, key_id: str | None, at_ms: int) -> int:
        """Revoke one key of a device, or all its keys (``key_id`` None); return how many."""

        def upd() -> int:
            if key_id is None:
                cur = self._exec(
                    "UPDATE devices SET status = 'revoked', revoked_at_ms = ? "
                    "WHERE tenant = ? AND device_id = ? AND status = 'active'",
                    (at_ms, tenant, device_id),
                )
            else:
                cur = self._exec(
                    "UPDATE devices SET status = 'revoked', revoked_at_ms = ? "
                    "WHERE tenant = ? AND device_id = ? AND key_id = ? AND status = 'active'",
                    (at_ms, tenant, device_id, key_id),
                )
            return int(cur.rowcount)

        n: int = self._run("device revoke", upd)
        return n

    # -- references ---------------------------------------------------------------------

    def put_reference(self, rec: ReferenceRecord, *, replace: bool = False) -> None:
        def ins() -> None:
            if replace:
                self._exec(
                    "DELETE FROM reference_templates WHERE tenant = ? AND reference = ?",
                    (rec.tenant, rec.reference),
                )
            cur = self._exec(
                "INSERT INTO reference_templates (tenant, reference, model_id, model_version, threshold, "
                "dim, template_ct, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (rec.tenant, rec.reference, rec.model_id, rec.model_version, rec.threshold, rec.dim,
                 rec.template_ct, rec.created_at_ms),
            )
            if cur.rowcount != 1:
                raise CarrierError(
                    f"reference {rec.tenant}/{rec.reference}: expected a new reference, got an "
                    "existing one (use --replace)",
                    reason="reference-exists",
                )

        self._run("reference add", ins)

    def get_reference(self, tenant: str, reference: str) -> ReferenceRecord | None:
        def get() -> ReferenceRecord | None:
            row = self._one(
                "SELECT tenant, reference, model_id, model_version, threshold, dim, template_ct, "
                "created_at_ms FROM reference_templates WHERE tenant = ? AND reference = ?",
                (tenant, reference),
            )
            return _reference(row) if row else None

        out: ReferenceRecord | None = self._read("reference lookup", get)
        return out

    def delete_reference(self, tenant: str, reference: str) -> bool:
        def rm() -> bool:
            cur = self._exec(
                "DELETE FROM reference_templates WHERE tenant = ? AND reference = ?", (tenant, reference)
            )
            return bool(cur.rowcount)

        out: bool = self._run("reference delete", rm)
        return out

    # -- batch lookups (one statement per chunk of keys, not one per envelope) -----------

    def get_devices(self, keys: Sequence[tuple[str, str, str]]) -> dict[tuple[str, str, str], DeviceRecord]:
        """Enrolments by ``(tenant, device_id, key_id)``; missing keys are absent."""

        if not keys:
            return {}

        def get() -> dict[tuple[str, str, str], DeviceRecord]:
            out: dict[tuple[str, str, str], DeviceRecord] = {}
            for chunk in _chunks(sorted(set(keys)), LOOKUP_CHUNK):
                rows = self._exec(
                    "SELECT d.tenant, d.device_id, d.key_id, d.public_key, d.status, d.enrolled_at_ms, "  # noqa: S608
                    f"d.revoked_at_ms FROM (VALUES {_values(len(chunk), 3)}) AS k JOIN devices AS d "
                    "ON d.tenant = k.column1 AND d.device_id = k.column2 AND d.key_id = k.column3",
                    [v for key in chunk for v in key],
                ).fetchall()
                for r in rows:
                    rec = _device(r)
                    out[(rec.tenant, rec.device_id, rec.key_id)] = rec
            return out

        res: dict[tuple[str, str, str], DeviceRecord] = self._read("device lookup", get)
        return res

    def find_receipts(self, message_ids: Sequence[str]) -> dict[str, StoredReceipt]:
        """Recorded receipts by message id; unrecorded ids are absent."""

        if not message_ids:
            return {}

        def get() -> dict[str, StoredReceipt]:
            out: dict[str, StoredReceipt] = {}
            for chunk in _chunks(sorted(set(message_ids)), LOOKUP_CHUNK):
                rows = self._exec(
                    "SELECT message_id, envelope_hash, receipt, status, reason FROM receipts "  # noqa: S608
                    f"WHERE message_id IN ({', '.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
                for r in rows:
                    out[str(r[0])] = StoredReceipt(bytes(r[1]), bytes(r[2]), str(r[3]), str(r[4]))
            return out

        res: dict[str, StoredReceipt] = self._read("receipt lookup", get)
        return res

    def get_references(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], ReferenceRecord]:
        """Reference rows by ``(tenant, reference)``; missing keys are absent."""

        if not keys:
            return {}

        def get() -> dict[tuple[str, str], ReferenceRecord]:
            out: dict[tuple[str, str], ReferenceRecord] = {}
            for chunk in _chunks(sorted(set(keys)), LOOKUP_CHUNK):
                rows = self._exec(
                    "SELECT r.tenant, r.reference, r.model_id, r.model_version, r.threshold, r.dim, "  # noqa: S608
                    f"r.template_ct, r.created_at_ms FROM (VALUES {_values(len(chunk), 2)}) AS k "
                    "JOIN reference_templates AS r ON r.tenant = k.column1 AND r.reference = k.column2",
                    [v for key in chunk for v in key],
                ).fetchall()
                for r in rows:
                    rec = _reference(r)
                    out[(rec.tenant, rec.reference)] = rec
            return out

        res: dict[tuple[str, str], ReferenceRecord] = self._read("reference lookup", get)
        return res

    # -- ingest -------------------------------------------------------------------------

    def find_receipt(self, message_id: str) -> StoredReceipt | None:
        """The recorded receipt of a message id (with the hash of the envelope bytes), or None."""

        def get() -> StoredReceipt | None:
            row = self._one(
                "SELECT envelope_hash, receipt, status, reason FROM receipts WHERE message_id = ?",
                (message_id,),
            )
            return StoredReceipt(bytes(row[0]), bytes(row[1]), str(row[2]), str(row[3])) if row else None

        out: StoredReceipt | None = self._read("receipt lookup", get)
        return out

    def record_batch(self, commits: Sequence[Commit], on_conflict: ConflictHandler) -> list[Recorded]:
        """Write every commit atomically, all in ONE transaction (one fsync per batch).

        1. Sequence claims: one SELECT fetches the stored ``seq - 1``, ``seq``, ``seq + 1``
           rows of every commit that consumes a sequence number; a number already taken,
           or a neighbour contradicting the chain (``seq - 1``'s digest must equal our
           ``prev_digest``; ``seq + 1``'s ``prev_digest`` must equal our digest; earlier
           commits of this batch count as stored) is a conflict. The claims are inserted
           in one multi-row ``INSERT … ON CONFLICT DO NOTHING RETURNING``; a claim another
           process inserted meanwhile is a conflict too. A conflicting message id that is
           already recorded keeps its first receipt; otherwise ``on_conflict`` gives the
           replacement (the ``replayed`` rejection).
        2. All receipts in one multi-row ``INSERT … ON CONFLICT (message_id) DO NOTHING
           RETURNING message_id``. A message id that was not inserted is already recorded
           (a redelivery, or another receiver process won the race): its FIRST receipt is
           returned, and the sequence row this batch claimed for it is deleted again.
        3. The accepted templates in one multi-row INSERT.

        A message id appearing twice in ``commits`` is written once; the later copies get
        the first's receipt with ``first=False``. Rows are written in message-id order, so
        concurrent batches holding the same messages lock in the same order (no deadlock
        on PostgreSQL).
        """
        firsts: dict[str, int] = {}
        for i in sorted(range(len(commits)), key=lambda i: commits[i].message_id):
            firsts.setdefault(commits[i].message_id, i)

        def batch() -> list[Recorded]:
            done: dict[str, Recorded] = {}
            final: dict[str, Commit] = {}
            conflicts: list[tuple[Commit, str]] = []
            claims = self._check_claims([commits[i] for i in firsts.values()], conflicts)
            claimed = self._insert_sequences(claims)
            for c in claims:
                if c.message_id in claimed:
                    final[c.message_id] = c
                else:
                    conflicts.append((c, f"sequence {c.seq} taken meanwhile by another message"))
            for i in firsts.values():
                if commits[i].seq is None:
                    final[commits[i].message_id] = commits[i]
            if conflicts:
                existing = self._existing_many([c.message_id for c, _ in conflicts])
                for c, why in conflicts:
                    if c.message_id in existing:
                        done[c.message_id] = existing[c.message_id]
                        continue
                    r = on_conflict(c, why)
                    if r.seq is not None or r.template is not None:  # pragma: no cover - misuse
                        raise CarrierError("on_conflict must return a commit without seq and template")
                    final[c.message_id] = r
            ordered = [final[mid] for mid in sorted(final)]
            inserted = self._insert_receipts(ordered)
            for c in ordered:
                mid = c.message_id
                if mid in inserted:
                    done[mid] = Recorded(mid, c.receipt, c.status, c.reason, first=True)
                    continue
                if mid in claimed:
                    self._exec(
                        "DELETE FROM sequences WHERE tenant = ? AND device_id = ? AND key_id = ? AND seq = ? "
                        "AND message_id = ?",
                        (c.tenant, c.device_id, c.key_id, c.seq, mid),
                    )
                first = self._existing_many([mid]).get(mid)
                if first is None:  # pragma: no cover - the conflicting row must exist
                    raise CarrierError(f"receipt for {mid}: expected a stored receipt, got none")
                done[mid] = first
            self._insert_templates([c for c in ordered if c.message_id in inserted and c.template])
            return [
                done[c.message_id] if firsts[c.message_id] == i
                else dataclasses.replace(done[c.message_id], first=False)
                for i, c in enumerate(commits)
            ]

        out: list[Recorded] = self._run("ingest", batch)
        return out

    def _check_claims(self, commits: list[Commit], conflicts: list[tuple[Commit, str]]) -> list[Commit]:
        """The sequence-consuming commits (in message-id order) whose claim is consistent
        with the stored sequences and with the earlier claims of this batch; the others
        go to ``conflicts`` with the reason."""
        wanted = [c for c in commits if c.seq is not None]
        if not wanted:
            return []
        keys = sorted({(c.tenant, c.device_id, c.key_id, n)
                       for c in wanted for n in (c.seq - 1, c.seq, c.seq + 1)})  # type: ignore[operator]
        known: dict[tuple[str, str, str, int], tuple[str, bytes, bytes]] = {}
        for chunk in _chunks(keys, LOOKUP_CHUNK):
            rows = self._exec(
                "SELECT s.tenant, s.device_id, s.key_id, s.seq, s.message_id, s.digest, s.prev_digest "  # noqa: S608
                f"FROM (VALUES {_values(len(chunk), 4)}) AS k JOIN sequences AS s ON s.tenant = k.column1 "
                "AND s.device_id = k.column2 AND s.key_id = k.column3 AND s.seq = k.column4",
                [v for key in chunk for v in key],
            ).fetchall()
            for r in rows:
                known[(str(r[0]), str(r[1]), str(r[2]), int(r[3]))] = (str(r[4]), bytes(r[5]), bytes(r[6]))
        ok: list[Commit] = []
        for c in wanted:
            assert c.seq is not None
            why = None
            taken, prev, nxt = (known.get((c.tenant, c.device_id, c.key_id, c.seq + d)) for d in (0, -1, 1))
            if taken is not None:
                why = f"sequence {c.seq} already used by message {taken[0]}"
            elif prev is not None and prev[1] != c.prev_digest:
                why = (f"chain broken: prev_digest expected {prev[1].hex()[:16]}… (message {prev[0]}, "
                       f"sequence {c.seq - 1}), got {c.prev_digest.hex()[:16]}…")
            elif nxt is not None and nxt[2] != c.digest:
                why = (f"chain broken: message {nxt[0]} (sequence {c.seq + 1}) names a different "
                       f"predecessor ({nxt[2].hex()[:16]}…) than this envelope")
            if why is None:
                known[(c.tenant, c.device_id, c.key_id, c.seq)] = (c.message_id, c.digest, c.prev_digest)
                ok.append(c)
            else:
                conflicts.append((c, why))
        return ok

    def _insert_sequences(self, claims: list[Commit]) -> set[str]:
        """Insert the claims; the message ids whose row was inserted (others lost a race)."""
        inserted: set[str] = set()
        for chunk in _chunks(claims, WRITE_CHUNK):
            rows = self._exec(
                "INSERT INTO sequences (tenant, device_id, key_id, seq, message_id, digest, "  # noqa: S608
                f"prev_digest, received_at_ms) VALUES {_values(len(chunk), 8)} "
                "ON CONFLICT DO NOTHING RETURNING message_id",
                [v for c in chunk for v in (c.tenant, c.device_id, c.key_id, c.seq, c.message_id, c.digest,
                                            c.prev_digest, c.received_at_ms)],
            ).fetchall()
            inserted.update(str(r[0]) for r in rows)
        return inserted

    def _insert_receipts(self, commits: list[Commit]) -> set[str]:
        inserted: set[str] = set()
        for chunk in _chunks(commits, WRITE_CHUNK):
            rows = self._exec(
                "INSERT INTO receipts (message_id, tenant, device_id, envelope_hash, status, reason, "  # noqa: S608
                f"receipt, received_at_ms) VALUES {_values(len(chunk), 8)} "
                "ON CONFLICT DO NOTHING RETURNING message_id",
                [v for c in chunk for v in (c.message_id, c.tenant, c.device_id, c.envelope_hash, c.status,
                                            c.reason, c.receipt, c.received_at_ms)],
            ).fetchall()
            inserted.update(str(r[0]) for r in rows)
        return inserted

    def _insert_templates(self, commits: list[Commit]) -> None:
        for chunk in _chunks(commits, WRITE_CHUNK):
            params: list[Any] = []
            for c in chunk:
                t = c.template
                assert t is not None
                params += (c.message_id, c.tenant, c.device_id, t.reference, t.model_id, t.model_version,
                           t.captured_at_ms, c.received_at_ms, t.template_ct)
            self._exec(
                "INSERT INTO templates (message_id, tenant, device_id, reference, model_id, model_version, "  # noqa: S608
                f"captured_at_ms, received_at_ms, template_ct) VALUES {_values(len(chunk), 9)} "
                "ON CONFLICT DO NOTHING",
                params,
            )

    def _existing_many(self, message_ids: list[str]) -> dict[str, Recorded]:
        out: dict[str, Recorded] = {}
        for chunk in _chunks(sorted(set(message_ids)), LOOKUP_CHUNK):
            rows = self._exec(
                "SELECT message_id, receipt, status, reason FROM receipts "  # noqa: S608
                f"WHERE message_id IN ({', '.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
            for r in rows:
                out[str(r[0])] = Recorded(str(r[0]), bytes(r[1]), str(r[2]), str(r[3]), first=False)
        return out

    def get_template(self, message_id: str) -> TemplateRow | None:
        def get() -> TemplateRow | None:
            row = self._one(
                "SELECT message_id, tenant, device_id, reference, model_id, model_version, captured_at_ms, "
                "received_at_ms, template_ct FROM templates WHERE message_id = ?",
                (message_id,),
            )
            if not row:
                return None
            return TemplateRow(
                str(row[0]), str(row[1]), str(row[2]), str(row[3]), str(row[4]), str(row[5]),
                int(row[6]), int(row[7]), bytes(row[8]),
            )

        out: TemplateRow | None = self._read("template lookup", get)
        return out

    def last_sequence(self, tenant: str, device_id: str, key_id: str) -> int | None:
        def get() -> int | None:
            row = self._one(
                "SELECT MAX(seq) FROM sequences WHERE tenant = ? AND device_id = ? AND key_id = ?",
                (tenant, device_id, key_id),
            )
            return int(row[0]) if row and row[0] is not None else None

        out: int | None = self._read("sequence lookup", get)
        return out

    # -- retention ----------------------------------------------------------------------

    def purge(self, templates_before_ms: int, receipts_before_ms: int) -> PurgeCounts:
        """Delete templates received before ``templates_before_ms`` and receipts/sequence
        entries received before ``receipts_before_ms`` (one transaction)."""

        def rm() -> PurgeCounts:
            t = self._exec("DELETE FROM templates WHERE received_at_ms < ?", (templates_before_ms,))
            r = self._exec("DELETE FROM receipts WHERE received_at_ms < ?", (receipts_before_ms,))
            s = self._exec("DELETE FROM sequences WHERE received_at_ms < ?", (receipts_before_ms,))
            return PurgeCounts(int(t.rowcount), int(r.rowcount), int(s.rowcount))

        out: PurgeCounts = self._run("purge", rm)
        return out

    def counts(self) -> dict[str, int]:
        def get() -> dict[str, int]:
            out = {}
            for table in ("devices", "reference_templates", "receipts", "sequences", "templates"):
                row = self._one(f"SELECT COUNT(*) FROM {table}")  # noqa: S608 - fixed names
                out[table] = int(row[0])
            return out

        res: dict[str, int] = self._read("counts", get)
        return res

    def _read(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run read-only ``fn`` without an explicit transaction (autocommit statements)."""
        try:
            with self._lock:
                return fn()
        except Exception as e:
            if self._is_backend_error(e):
                raise self._wrap(e, what) from e
            raise


def _device(row: Sequence[Any]) -> DeviceRecord:
    status = str(row[4])
    if status not in ("active", "revoked"):  # pragma: no cover - CHECK constraint
        raise CarrierError(f"device status: expected active or revoked, got {status!r}")
    return DeviceRecord(
        str(row[0]), str(row[1]), str(row[2]), bytes(row[3]),
        "active" if status == "active" else "revoked",
        int(row[5]), None if row[6] is None else int(row[6]),
    )


def _reference(row: Sequence[Any]) -> ReferenceRecord:
    return ReferenceRecord(
        str(row[0]), str(row[1]), str(row[2]), str(row[3]), float(row[4]), int(row[5]), bytes(row[6]),
        int(row[7]),
    )


# Multi-row statements interpolate only "?" placeholders (never values) into the SQL.
LOOKUP_CHUNK = 256  # keys per lookup statement (parameters stay far below both backends' limits)
WRITE_CHUNK = 128  # rows per multi-row INSERT


def _chunks(items: Sequence[Any], n: int) -> list[Sequence[Any]]:
    return [items[i : i + n] for i in range(0, len(items), n)]


def _values(rows: int, cols: int) -> str:
    one = "(" + ", ".join("?" * cols) + ")"
    return ", ".join([one] * rows)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def open_store(target: str, *, migrate: bool = True) -> SqlStore:
    """Open the store named by ``target``: ``postgresql://``/``postgres://`` DSN → PostgreSQL,
    anything else → a SQLite file path. Runs migrations unless ``migrate`` is False."""
    store: SqlStore
    if target.startswith(("postgresql://", "postgres://")) or (
        "=" in target and ("dbname" in target or "host" in target)
    ):
        from kycedge.carrier.store_pg import PostgresStore

        store = PostgresStore.connect(target)
    else:
        from kycedge.carrier.store_sqlite import SqliteStore

        store = SqliteStore.connect(target)
    try:
        if migrate:
            store.migrate()
        else:
            store.require_schema()
    except BaseException:
        store.close()
        raise
    return store


def replace(c: Commit, **changes: Any) -> Commit:
    return dataclasses.replace(c, **changes)
