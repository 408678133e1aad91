"""PostgreSQL backend of the carrier store (psycopg 3): the only psycopg import.

Autocommit connection with explicit ``BEGIN`` (READ COMMITTED): the de-duplication and
sequence guarantees come from PRIMARY KEYs and ``INSERT ... ON CONFLICT DO NOTHING``,
which are correct under READ COMMITTED with any number of receiver processes; a
deadlock or serialization failure is retried (the whole batch transaction). Migrations
take a transaction-scoped advisory lock so that receivers starting together apply them
once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import psycopg
from psycopg import errors as pgerrors

from kycedge.carrier.store import SqlStore
from kycedge.core.errors import CarrierError

__all__ = ["PostgresStore"]

_MIGRATION_LOCK = 0x6B79_6365_6467_6501  # "kycedge" + 1, any fixed bigint


class PostgresStore(SqlStore):
    backend = "postgresql"
    _types: ClassVar[dict[str, str]] = {"blob": "BYTEA", "real": "DOUBLE PRECISION", "bigint": "BIGINT"}

    @classmethod
    def connect(cls, dsn: str, *, connect_timeout_s: int = 10) -> PostgresStore:
        try:
            conn = psycopg.connect(dsn, autocommit=True, connect_timeout=connect_timeout_s)
        except psycopg.Error as e:
            # Never echo the DSN: it may hold a password.
            raise CarrierError(f"postgresql: cannot connect: {type(e).__name__}: {e}") from e
        return cls(conn)

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._conn.execute(sql.replace("?", "%s"), tuple(params), prepare=True)

    def _begin(self) -> None:
        self._conn.execute("BEGIN")

    def _lock_migrations(self) -> None:
        self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK & 0x7FFF_FFFF_FFFF_FFFF,))

    def _is_backend_error(self, e: Exception) -> bool:
        return isinstance(e, psycopg.Error)

    def _is_retryable(self, e: Exception) -> bool:
        return isinstance(e, pgerrors.DeadlockDetected | pgerrors.SerializationFailure)
