"""The source distribution is complete (models, docs, units, licence) and the metadata is SPDX."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def test_licence_is_an_spdx_string_with_the_apache_text() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["license"] == "Apache-2.0"
    assert "LICENSE" in meta["license-files"]
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text
    assert "Version 2.0, January 2004" in text


def test_carrier_extra_carries_the_postgres_driver() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(d.startswith("psycopg") for d in extras["carrier"])


@pytest.mark.slow
def test_sdist_carries_models_docs_units_and_licence(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "build", "--sdist", "--outdir", str(tmp_path), str(ROOT)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "License classifiers are deprecated" not in proc.stderr
    assert "project.license` as a TOML table is deprecated" not in proc.stdout + proc.stderr
    (sdist,) = tmp_path.glob("kycedge-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for want in ("LICENSE", "models/manifest.json", "models/sface_2021dec_int8.tflite",
                 "models/LICENSES/Apache-2.0.txt", "docs/deployment.md", "systemd/kycedge.service",
                 "systemd/kycedge-carrier.service", "deploy/mosquitto/mosquitto.conf",
                 "deploy/mosquitto/acl", "device/kycedge/__init__.py"):
        assert want in names, want
