"""Carrier storage: one schema, versioned migrations, two backends.

The SQL here is written once, with ``?`` placeholders and portable types spelled as
``{blob}`` / ``{real}`` / ``{bigint}`` tokens that each backend fills in
(:mod:`kycedge.carrier.store.sqlite`, :mod:`kycedge.carrier.store.pg`). The schema and
record types are in :mod:`kycedge.carrier.store.schema`, the batched ingest statements in
:mod:`kycedge.carrier.store.ingest`. Both backends speak DB-API through a tiny seam
(``_exec``), run in autocommit mode and open explicit transactions (``_run``).

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

from kycedge.carrier.store.ingest import IngestOps, device_from_row, reference_from_row
from kycedge.carrier.store.schema import (
    MIGRATIONS,
    Commit,
    DeviceRecord,
    Migration,
    PurgeCounts,
    Recorded,
    ReferenceRecord,
    StoredReceipt,
    StoredTemplate,
    TemplateRow,
)
from kycedge.core.errors import CarrierError

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

class SqlStore(IngestOps):
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
                "revoked_at_ms, signature_alg, key_protection, attestation) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (rec.tenant, rec.device_id, rec.key_id, rec.public_key, rec.status,
                 rec.enrolled_at_ms, rec.revoked_at_ms, rec.signature_alg, rec.key_protection,
                 rec.attestation),
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
                "SELECT tenant, device_id, key_id, public_key, status, enrolled_at_ms, revoked_at_ms, "
                "signature_alg, key_protection, attestation FROM devices "
                "WHERE tenant = ? AND device_id = ? AND key_id = ?",
                (tenant, device_id, key_id),
            )
            return device_from_row(row) if row else None

        out: DeviceRecord | None = self._read("device lookup", get)
        return out

    def list_devices(self, tenant: str | None = None) -> list[DeviceRecord]:
        def get() -> list[DeviceRecord]:
            if tenant is None:
                rows = self._exec(
                    "SELECT tenant, device_id, key_id, public_key, status, enrolled_at_ms, revoked_at_ms, "
                "signature_alg, key_protection, attestation "
                    "FROM devices ORDER BY tenant, device_id, enrolled_at_ms"
                ).fetchall()
            else:
                rows = self._exec(
                    "SELECT tenant, device_id, key_id, public_key, status, enrolled_at_ms, revoked_at_ms, "
                "signature_alg, key_protection, attestation "
                    "FROM devices WHERE tenant = ? ORDER BY device_id, enrolled_at_ms",
                    (tenant,),
                ).fetchall()
            return [device_from_row(r) for r in rows]

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
            return reference_from_row(row) if row else None

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


def now_ms() -> int:
    return time.time_ns() // 1_000_000


POSTGRES_EXTRA = "kycedge[carrier]"


def _postgres_store_class() -> Any:
    """The PostgreSQL backend, or a clear error naming the extra when psycopg is missing."""
    try:
        from kycedge.carrier.store.pg import PostgresStore
    except ModuleNotFoundError as e:
        if e.name is None or e.name.split(".")[0] != "psycopg":
            raise
        raise CarrierError(
            f"database: a postgresql:// DSN needs the PostgreSQL driver psycopg 3, got no module "
            f"{e.name!r}; install it with: pip install '{POSTGRES_EXTRA}'", reason="no-driver",
        ) from e
    return PostgresStore


def is_postgres(target: str) -> bool:
    """True for a PostgreSQL DSN (URL or key=value form), False for a SQLite file path."""
    return target.startswith(("postgresql://", "postgres://")) or (
        "=" in target and ("dbname" in target or "host" in target)
    )


def open_store(target: str, *, migrate: bool = True) -> SqlStore:
    """Open the store named by ``target``: ``postgresql://``/``postgres://`` DSN → PostgreSQL,
    anything else → a SQLite file path. Runs migrations unless ``migrate`` is False."""
    store: SqlStore
    if is_postgres(target):
        store = _postgres_store_class().connect(target)
    else:
        from kycedge.carrier.store.sqlite import SqliteStore

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
