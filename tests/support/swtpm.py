"""A real swtpm (TPM 2.0 simulator) for tests: manufactured with an EK certificate from a
local CA of its own (swtpm_setup + swtpm_localca), served on loopback TCP."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def missing() -> str | None:
    """Why the TPM tests cannot run here, or None."""
    for tool in ("swtpm", "swtpm_setup", "swtpm_localca"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (Debian swtpm, swtpm-tools; ./run.sh setup installs them)"
    try:
        import tpm2_pytss  # noqa: F401
    except ImportError as e:
        return f"tpm2-pytss not importable ({e}); pip install -e '.[dev]' with Debian libtss2-dev"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Swtpm:
    state: Path
    ca_dir: Path
    port: int

    @property
    def tcti(self) -> str:
        return f"swtpm:host=127.0.0.1,port={self.port}"


def manufacture(root: Path) -> tuple[Path, Path]:
    """A TPM state with an EK certificate signed by a local CA in ``root/ca``."""
    state, ca = root / "state", root / "ca"
    state.mkdir(parents=True)
    ca.mkdir()
    (root / "localca.conf").write_text(
        f"statedir = {ca}\nsigningkey = {ca}/signkey.pem\nissuercert = {ca}/issuercert.pem\n"
        f"certserial = {ca}/certserial\n")
    (root / "localca.options").write_text("--platform-manufacturer kycedge-test\n--platform-version 2.1\n"
                                          "--platform-model swtpm\n")
    (root / "setup.conf").write_text(
        f"create_certs_tool = swtpm_localca\ncreate_certs_tool_config = {root}/localca.conf\n"
        f"create_certs_tool_options = {root}/localca.options\nactive_pcr_banks = sha256\n")
    subprocess.run(["swtpm_setup", "--tpm2", "--tpmstate", str(state), "--create-ek-cert",
                    "--config", str(root / "setup.conf"), "--overwrite"],
                   check=True, capture_output=True, timeout=60)
    return state, ca


def _start(state: Path) -> tuple[subprocess.Popen[bytes], int]:
    """swtpm on a free port and port + 1 (its TCTI wants the control channel there); ports
    can be taken between the probe and the bind, so retry on a fresh pair."""
    last = b""
    for _ in range(8):
        port = _free_port()
        proc = subprocess.Popen(
            ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={state}",
             "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
             "--ctrl", f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
             "--flags", "not-need-init,startup-clear"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        last = proc.stderr.read() if proc.stderr else b""
    raise RuntimeError(f"swtpm did not start: {last!r}")


@contextlib.contextmanager
def running(state: Path, ca: Path) -> Iterator[Swtpm]:
    proc, port = _start(state)
    try:
        yield Swtpm(state, ca, port)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


def fixture_tpm(root: Path) -> contextlib.AbstractContextManager[Swtpm]:
    """A manufactured and running swtpm under ``root`` (skip first if :func:`missing`)."""
    state, ca = manufacture(root)
    return running(state, ca)
