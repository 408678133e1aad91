"""A real SoftHSM2 token for tests, in a temporary token directory (SOFTHSM2_CONF)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
USER_PIN = "4711-kycedge"


def missing() -> str | None:
    if shutil.which("softhsm2-util") is None or not MODULE.exists():
        return "SoftHSM2 not installed (Debian softhsm2; ./run.sh setup installs it)"
    try:
        import pkcs11  # noqa: F401
    except ImportError as e:
        return f"python-pkcs11 not importable ({e}); pip install -e '.[dev]'"
    return None


_SESSION_ROOT: Path | None = None


TOKEN_LABEL = "kycedge-test"


def token_label() -> str:
    """The one test token of this process. SoftHSM2 reads SOFTHSM2_CONF and its token list
    once per process (C_Initialize), so the store and the token are made before the first
    PKCS#11 call and shared; tests keep apart by key label."""
    import os
    import tempfile

    global _SESSION_ROOT
    if _SESSION_ROOT is None:
        root = Path(tempfile.mkdtemp(prefix="kycedge-softhsm-"))
        (root / "tokens").mkdir()
        conf = root / "softhsm2.conf"
        conf.write_text(f"directories.tokendir = {root}/tokens\nobjectstore.backend = file\n"
                        "log.level = ERROR\n")
        os.environ["SOFTHSM2_CONF"] = str(conf)
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", TOKEN_LABEL,
                        "--so-pin", "so-0000", "--pin", USER_PIN],
                       check=True, capture_output=True, timeout=30)
        _SESSION_ROOT = root
    return TOKEN_LABEL


def pin_file(root: Path) -> Path:
    path = root / "pin"
    path.write_text(USER_PIN + "\n")
    path.chmod(0o600)
    return path
