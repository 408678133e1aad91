"""SQLite backend of the carrier store (the default: nothing to set up).

WAL journal (readers never block the writer), ``synchronous=FULL`` (a commit is on disk
before the receipt it backs is returned: the device deletes its template on that
receipt), ``busy_timeout`` so several receiver processes on one file wait for the write
lock instead of failing, and ``BEGIN IMMEDIATE`` so a transaction takes the write lock
up front (no lock upgrade deadlock between two writers).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from kycedge.carrier.store import SqlStore
from kycedge.core.errors import CarrierError

__all__ = ["SqliteStore"]


class SqliteStore(SqlStore):
    backend = "sqlite"
    _types: ClassVar[dict[str, str]] = {"blob": "BLOB", "real": "REAL", "bigint": "INTEGER"}

    @classmethod
    def connect(cls, path: str | Path, *, busy_timeout_ms: int = 30_000) -> SqliteStore:
        p = Path(path)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(p), isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as e:
            raise CarrierError(f"sqlite: cannot open database {p}: {e}") from e
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as e:
            conn.close()
            raise CarrierError(f"sqlite: {p}: expected a SQLite database, got: {e}") from e
        if not mode or str(mode[0]).lower() != "wal":
            conn.close()
            raise CarrierError(f"sqlite: {p}: expected journal_mode wal, got {mode}")
        with contextlib.suppress(OSError):  # not ours to fix (read-only mount…)
            p.chmod(0o600)
        return cls(conn)

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._conn.execute(sql, params)

    def _begin(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def _is_backend_error(self, e: Exception) -> bool:
        return isinstance(e, sqlite3.Error)

    def _is_retryable(self, e: Exception) -> bool:
        return isinstance(e, sqlite3.OperationalError) and "locked" in str(e).lower()
