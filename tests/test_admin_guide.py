"""docs/admin-guide.md is executable: every ``sh`` block runs, in order and verbatim, here.

The blocks go into one bash script (``set -euo pipefail``: the first failing command fails
the test, with its output) run in a temporary root, with a PostgreSQL server and free ports
of its own, the package's commands on PATH and ``KYCEDGE_SHARE`` = this checkout (models,
fixtures, deploy/). Whatever the guide started is stopped afterwards by its pid files.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pg
import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "admin-guide.md"
BLOCK = re.compile(r"^```sh\n(.*?)^```$", re.S | re.M)

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.broker]


def blocks(text: str) -> list[str]:
    return BLOCK.findall(text)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_guide_has_blocks_for_every_step() -> None:
    text = GUIDE.read_text()
    assert len(blocks(text)) >= 10
    for step in ("ca init", "--key-group mosquitto", "createdb", "db migrate", "keys csr",
                 "device issue", "device enroll", "config check", "reference add", "bundle build",
                 "announce", "updates rollback"):
        assert any(step in b for b in blocks(text)), step


@pytest.mark.skipif(os.geteuid() != 0, reason="the broker block drops to user mosquitto (needs root)")
@pytest.mark.skipif(shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
                    reason="mosquitto not installed")
def test_admin_guide_runs_verbatim() -> None:
    why = pg.available()
    if why:
        pytest.skip(why)
    root = Path(tempfile.mkdtemp(prefix="kycedge-guide-"))
    root.chmod(0o755)  # Mosquitto, running as its own user, reads its files below
    script = root / "guide.sh"
    script.write_text("set -euxo pipefail\n" + "\n".join(blocks(GUIDE.read_text())))
    bindir = Path(sys.executable).parent
    with pg.pg_server() as server:
        env = {**os.environ, "ROOT": str(root), "KYCEDGE_SHARE": str(ROOT),
               "BROKER_PORT": str(_free_port()), "REPO_PORT": str(_free_port()),
               "PGHOST": "127.0.0.1", "PGPORT": str(server.port), "PGUSER": "postgres",
               "PATH": f"{bindir}:/usr/sbin:{os.environ.get('PATH', '/usr/bin:/bin')}"}
        out_file, err_file = root / "guide.out", root / "guide.err"
        try:
            # files, not pipes: the daemons the guide starts in the background keep theirs open
            with open(out_file, "w") as out, open(err_file, "w") as err:
                rc = subprocess.run(["bash", str(script)], env=env, stdout=out, stderr=err,
                                    stdin=subprocess.DEVNULL, timeout=300, cwd=root).returncode
        finally:
            for pid_file in (root / "run").glob("*.pid"):
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid_file.read_text()), signal.SIGKILL)
        logs = "".join(f"\n--- {p.name}\n{p.read_text(errors='replace')[-1500:]}"
                       for p in sorted((root / "run").glob("*.log")))
        assert rc == 0, err_file.read_text()[-4000:] + logs
    out = out_file.read_text()
    assert "schema_version" in out
    assert '"reason": "match"' in out or '"reason":"match"' in out
    shutil.rmtree(root, ignore_errors=True)
