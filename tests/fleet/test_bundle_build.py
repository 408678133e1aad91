"""``bundle build`` / ``bundle sign``: what is published is exactly the bundle's own regular files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from kycedge.fleet.bundle_build import _license_files, build_bundle, sign_bundle
from kycedge.fleet.repository import RepoError
from kycedge.protocol.bundle import sha256_file
from unit.updates.helpers import Fleet, fake_describe, fake_embed, fake_models_dir


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    f = Fleet(tmp_path / "fleet")
    f.close()
    return f


def list_file(bundle: Path, rel: str, content_of: Path) -> None:
    """Add ``rel`` to bundle.json with the sha256/size of ``content_of`` (what a symlink shows)."""
    obj = json.loads((bundle / "bundle.json").read_text())
    digest, size = sha256_file(content_of)
    obj["files"].append({"path": rel, "sha256": digest, "size": size})
    (bundle / "bundle.json").write_text(json.dumps(obj))


def test_sign_refuses_symlink_outside(fleet: Fleet, tmp_path: Path) -> None:
    bundle = fleet.bundle(1)
    secret = tmp_path / "outside" / "id_ed25519"
    secret.parent.mkdir()
    secret.write_bytes(b"-----BEGIN PRIVATE KEY----- not for publishing")
    (bundle / "LICENSES").mkdir()
    (bundle / "LICENSES" / "MIT.txt").symlink_to(secret)
    list_file(bundle, "LICENSES/MIT.txt", secret)
    before = fleet.repo.targets().signed.version
    with pytest.raises(RepoError, match=r"LICENSES/MIT.txt: expected a regular file .* got a symlink"):
        sign_bundle(fleet.repo, bundle)
    assert fleet.repo.targets().signed.version == before
    assert not any(b"not for publishing" in p.read_bytes()
                   for p in fleet.repo.targets_dir.rglob("*") if p.is_file())


def test_sign_refuses_symlinked_directory(fleet: Fleet, tmp_path: Path) -> None:
    bundle = fleet.bundle(1)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "MIT.txt").write_text("outside")
    (bundle / "LICENSES").symlink_to(outside, target_is_directory=True)
    list_file(bundle, "LICENSES/MIT.txt", outside / "MIT.txt")
    with pytest.raises(RepoError, match="got a symlink"):
        sign_bundle(fleet.repo, bundle)


def test_sign_refuses_special_file(fleet: Fleet) -> None:
    bundle = fleet.bundle(1)
    (bundle / "LICENSES").mkdir()
    os.mkfifo(bundle / "LICENSES" / "pipe")
    with pytest.raises(RepoError, match="got a special file"):
        sign_bundle(fleet.repo, bundle)


def test_build_refuses_symlinked_model_and_licence(tmp_path: Path) -> None:
    models = fake_models_dir(tmp_path / "models", 1)
    real = tmp_path / "det-real.tflite"
    os.replace(models / "det.tflite", real)
    (models / "det.tflite").symlink_to(real)
    golden = [tmp_path / f"g{i}.jpg" for i in range(3)]
    for i, g in enumerate(golden):
        g.write_bytes(bytes([i]) * 100)
    with pytest.raises(RepoError, match=r"det.tflite: expected a regular file .* got a symlink"):
        build_bundle(models, tmp_path / "out", version=1, golden=golden, embed=fake_embed,
                     describe=fake_describe)
    lic = tmp_path / "m2" / "LICENSES"
    lic.mkdir(parents=True)
    (lic / "ok.txt").write_text("MIT")
    (lic / "bad.txt").symlink_to(real)
    with pytest.raises(RepoError, match=r"LICENSES/bad.txt: expected a regular file .*symlink"):
        _license_files(tmp_path / "m2")


def golden_images(tmp_path: Path) -> list[Path]:
    out = [tmp_path / f"g{i}.jpg" for i in range(3)]
    for i, g in enumerate(out):
        g.write_bytes(bytes([i]) * 100)
    return out


@pytest.mark.parametrize(("vectors", "needle"), [
    ([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]],
     "genuine pair ('g0-g0', 'g1-g1'): expected score >= 0.4, got 0.0000"),
    ([[1.0, 0.0], [1.0, 0.1], [1.0, 0.2]],
     "impostor pair ('g0-g0', 'g2-g2'): expected score < 0.4, got 0.98"),
])
def test_build_refuses_golden_pairs_that_fail_the_threshold(tmp_path: Path, vectors: list[list[float]],
                                                            needle: str) -> None:
    models = fake_models_dir(tmp_path / "models", 1)
    with pytest.raises(RepoError) as e:
        build_bundle(models, tmp_path / "out", version=1, golden=golden_images(tmp_path),
                     embed=lambda _m, _i: vectors, describe=fake_describe)
    assert needle in e.value.message
    assert "emb@v1 (threshold 0.4)" in e.value.message
    assert not (tmp_path / "out").exists()                 # nothing built


def test_build_accepts_golden_pairs_that_pass(tmp_path: Path) -> None:
    models = fake_models_dir(tmp_path / "models", 1)
    m = build_bundle(models, tmp_path / "out", version=1, golden=golden_images(tmp_path),
                     embed=fake_embed, describe=fake_describe)
    assert (tmp_path / "out" / "bundle.json").is_file()
    assert [g.file for g in m.selftest.images] == ["golden/g0-g0.jpg", "golden/g1-g1.jpg", "golden/g2-g2.jpg"]


def test_bundle_carries_only_the_pipeline_models(tmp_path: Path, faces_dir: Path) -> None:
    """8 .tflite files shipped; the pipeline uses BlazeFace, FaceMesh, SFace and YuNet-320 (fallback)."""
    from kycedge.vision import Pipeline, default_models_dir
    from kycedge.vision.models import ROLES, load_manifest

    src = default_models_dir()
    if not (src / "manifest.json").exists():
        pytest.skip("no models")
    vm = load_manifest(src)
    used = {vm.role(r).file for r in ROLES if vm.role(r) is not None}
    assert len(list(src.glob("*.tflite"))) > len(used)
    golden = [faces_dir / n for n in ("obama.jpg", "obama2.jpg", "biden.jpg")]
    m = build_bundle(src, tmp_path / "b", version=1, golden=golden, embed=fake_embed)
    out = tmp_path / "b"
    assert {p.name for p in out.glob("*.tflite")} == used
    assert {e.file for e in m.models} == used
    assert {e.role for e in m.models} <= set(ROLES)
    assert "yunet_2023mar_320_fp16.tflite" in used  # the still-image fallback detector ships too
    shipped = load_manifest(out)
    assert {e.file for e in shipped.models.values()} == used      # manifest.json lists what is there
    assert shipped.pipeline == vm.pipeline
    assert shipped.matching == vm.matching
    # the unused detectors stay behind (golden images and licences come on top)
    model_bytes = sum(p.stat().st_size for p in out.glob("*.tflite"))
    assert model_bytes < sum(p.stat().st_size for p in src.glob("*.tflite"))
    assert {f.path for f in m.files} >= {"manifest.json", "LICENSES/Apache-2.0.txt"}
    pipe = Pipeline.load(out)                                      # the trimmed set loads and runs
    assert (pipe.model_id, pipe.model_version) == (m.matching.model_id, m.matching.model_version)
    assert pipe.process_image_bytes(golden[0].read_bytes()).ok
