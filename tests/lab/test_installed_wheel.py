"""The package as a new user installs it: a wheel in a fresh venv outside the checkout.

Builds the wheel from this checkout, installs it (dependencies from the registry, mostly
from pip's cache after set-up) into a venv under a temporary directory, and runs the
commands from a directory that is not the checkout: ``kycedge embed``, ``kycedge
compare``, ``kycedge-carrier keys init`` + ``reference add`` and ``kycedge demo`` (which
starts the daemon, a broker and the receiver). Nothing may come from the source tree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.broker]


def _run(cmd: list[str], cwd: Path, env: dict[str, str],
         timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


FACES = "import kycedge.core.paths as p; print(p.data_dir('faces'))"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], Path]:
    base = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KYCEDGE_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    src = base / "src"  # build from a copy: the wheel must not depend on the checkout's build dirs
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv*", ".git", "build", "*.egg-info", "__pycache__", ".work", ".mypy_cache", ".ruff_cache"))
    r = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(base / "dist"), str(src)],
             base, env)
    assert r.returncode == 0, r.stderr[-2000:]
    wheel = next((base / "dist").glob("kycedge-*.whl"))
    shutil.rmtree(src)
    venv = base / "venv"
    r = _run([sys.executable, "-m", "venv", str(venv)], base, env)
    assert r.returncode == 0, r.stderr
    r = _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
              str(wheel)], base, env, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    work = base / "elsewhere"
    work.mkdir()
    return venv, env, work


def test_installed_package_is_not_the_checkout(installed: tuple[Path, dict[str, str], Path]) -> None:
    venv, env, work = installed
    r = _run([str(venv / "bin" / "python"), "-c",
              "import kycedge, kycedge.core.paths as p; print(kycedge.__file__); "
              "print(p.data_dir('models'))"],
             work, env)
    assert r.returncode == 0, r.stderr
    pkg, models = r.stdout.split()
    assert Path(pkg).is_relative_to(venv)
    assert not Path(pkg).is_relative_to(ROOT)
    assert (Path(models) / "manifest.json").is_file()
    # the unit's install does not carry the carrier's PostgreSQL driver
    r = _run([str(venv / "bin" / "python"), "-c", "import psycopg"], work, env)
    assert r.returncode != 0


def test_embed_and_compare(installed: tuple[Path, dict[str, str], Path]) -> None:
    venv, env, work = installed
    faces = Path(_run([str(venv / "bin" / "python"), "-c", FACES], work, env).stdout.strip())
    r = _run([str(venv / "bin" / "kycedge"), "embed", str(faces / "obama.jpg")], work, env)
    assert r.returncode == 0, r.stderr
    line = json.loads(r.stdout.splitlines()[0])
    assert (line["ok"], line["reason"]) == (True, "ok"), line
    r = _run([str(venv / "bin" / "kycedge"), "compare", str(faces / "obama.jpg"), str(faces / "obama2.jpg")],
             work, env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["decision"] == "match"


def test_carrier_reference_add(installed: tuple[Path, dict[str, str], Path]) -> None:
    venv, env, work = installed
    faces = Path(_run([str(venv / "bin" / "python"), "-c", FACES], work, env).stdout.strip())
    state = work / "carrier"
    carrier = str(venv / "bin" / "kycedge-carrier")
    r = _run([carrier, "keys", "init", "--state-dir", str(state)], work, env)
    assert r.returncode == 0, r.stderr
    r = _run([carrier, "reference", "add", "rInstalledWheelRef01", str(faces / "biden.jpg"),
              "--tenant", "acme", "--state-dir", str(state)], work, env)
    assert r.returncode == 0, r.stderr + r.stdout


@pytest.mark.skipif(shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
                    reason="mosquitto is not installed (run.sh installs it)")
def test_demo_runs_the_whole_flow(installed: tuple[Path, dict[str, str], Path]) -> None:
    venv, env, work = installed
    r = _run([str(venv / "bin" / "kycedge"), "demo"], work, env, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "match" in r.stdout
