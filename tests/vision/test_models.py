"""models: manifest validation and the sha256 check of every model file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from kycedge.core.errors import ModelError
from kycedge.vision.models import load_manifest


def copy_models(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        if p.is_file():
            shutil.copy(p, dst / p.name)
    return dst


def test_shipped_manifest_is_complete(models_dir: Path) -> None:
    m = load_manifest(models_dir)
    for role in ("detector", "embedder"):
        entry = m.role(role)
        assert entry is not None
        assert len(m.read_checked(entry)) > 1000
    assert -1.0 < m.threshold < 1.0
    assert m.far == pytest.approx(1e-4)
    assert "calibration" in m.matching


def test_tampered_model_refused(models_dir: Path, tmp_path: Path) -> None:
    d = copy_models(models_dir, tmp_path / "m")
    m = load_manifest(d)
    entry = m.role("embedder")
    assert entry is not None
    path = d / entry.file
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError) as e:
        m.read_checked(entry)
    assert e.value.reason == "model-tampered"
    from kycedge.vision import Pipeline

    with pytest.raises(ModelError):
        Pipeline.load(d)


@pytest.mark.parametrize(
    ("manifest", "fragment"),
    [
        ("{", "JSON"),
        ("[]", "JSON object"),
        ('{"models": {"x": {"file": "../etc/passwd", "sha256": "' + "a" * 64 + '"}}}', "plain file name"),
        ('{"models": {"x": {"file": "x.tflite", "sha256": "zz"}}}', "64 lowercase hex"),
        ('{"models": 3}', "object or array"),
    ],
)
def test_bad_manifests(tmp_path: Path, manifest: str, fragment: str) -> None:
    (tmp_path / "manifest.json").write_text(manifest)
    with pytest.raises(ModelError) as e:
        load_manifest(tmp_path)
    assert fragment in e.value.message


def test_missing_role_and_threshold(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({
        "models": {"a": {"file": "a.tflite", "sha256": "0" * 64}},
        "pipeline": {"detector": "b"}, "matching": {"threshold": 7}}))
    m = load_manifest(tmp_path)
    with pytest.raises(ModelError, match=r"pipeline\.detector"):
        m.role("detector")
    with pytest.raises(ModelError, match="threshold"):
        _ = m.threshold
    with pytest.raises(ModelError, match=r"cannot read"):
        m.read_checked(m.models["a"])


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as e:
        load_manifest(tmp_path)
    assert e.value.reason == "model-missing"
