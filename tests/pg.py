"""A throw-away PostgreSQL server for tests (the Debian postgresql-15 package).

PostgreSQL refuses to run as root, so when the tests run as root, initdb and postgres
run as the ``postgres`` user via ``runuser -u postgres --`` in a temporary directory
owned by that user. The server listens on a free port on 127.0.0.1 only, with trust
authentication (loopback, test data only) and ``fsync=off`` (speed; nothing to keep).

Each test gets its own schema through ``search_path`` in the DSN, so tests never see
each other's rows and no database has to be created per test.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import count
from pathlib import Path
from urllib.parse import quote

PG_BIN = Path(os.environ.get("KYCEDGE_PG_BIN", "/usr/lib/postgresql/15/bin"))


def available() -> str | None:
    """None if a server can be started here, else the reason why not."""
    if not (PG_BIN / "postgres").exists():
        return f"PostgreSQL binaries not found in {PG_BIN}"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root and runuser is missing"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    def __init__(self, port: int, root: Path) -> None:
        self.port = port
        self.root = root
        self._schemas = count(1)

    def dsn(self, schema: str | None = None) -> str:
        base = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        if schema is None:
            return base
        return f"{base}?options={quote(f'-csearch_path={schema}')}"

    def new_schema(self) -> str:
        """Create a fresh, empty schema and return a DSN that uses it."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._schemas)}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
        return self.dsn(name)


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def pg_server() -> Iterator[PgServer]:
    why = available()
    if why:
        raise RuntimeError(why)
    root = Path(tempfile.mkdtemp(prefix="kycedge-pg-"))
    root.chmod(0o755)
    data = root / "data"
    sock = root / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(sock, "postgres", "postgres")
    log = root / "server.log"
    proc: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(
            _as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                          "-E", "UTF8", "--no-sync"]),
            check=True, capture_output=True, timeout=120,
        )
        port = _free_port()
        with open(log, "wb") as logf:
            proc = subprocess.Popen(
                _as_postgres([str(PG_BIN / "postgres"), "-D", str(data), "-p", str(port),
                              "-k", str(sock), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                              "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                              "-c", "max_connections=50", "-c", "shared_buffers=32MB"]),
                stdout=logf, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {proc.returncode}: {log.read_text()[-2000:]}")
            r = subprocess.run(
                [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-q"], check=False
            )
            if r.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not become ready: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield PgServer(port, root)
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()  # SIGTERM: smart shutdown
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)
