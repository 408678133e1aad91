"""Carrier fixtures: every storage test runs on SQLite AND a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pg
import pytest
from kycedge.carrier.store import SqlStore, open_store


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pg.PgServer]:
    why = pg.available()
    if why:
        pytest.skip(why)
    with pg.pg_server() as server:
        yield server


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database: a SQLite file path or a PostgreSQL DSN (own schema)."""
    if request.param == "sqlite":
        return str(tmp_path / "carrier.db")
    server: pg.PgServer = request.getfixturevalue("pg_server")
    return server.new_schema()


@pytest.fixture
def store(db_target: str) -> Iterator[SqlStore]:
    s = open_store(db_target)
    try:
        yield s
    finally:
        s.close()
