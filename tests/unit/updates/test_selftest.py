"""Self-test on the real shipped models and the public-domain fixture faces."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from kycedge.fleet.bundle_build import build_bundle
from kycedge.protocol.bundle import BundleManifest, parse_manifest
from kycedge.protocol.match import judge
from kycedge.protocol.update_errors import SelfTestError
from kycedge.unit.updates.agent import UpdateAgent
from kycedge.unit.updates.selftest import run_selftest
from kycedge.vision import default_models_dir

from .helpers import Fleet, bundle_variant, publish_dir, unit_config

MODELS = default_models_dir()
FACES = Path(__file__).resolve().parents[3] / "fixtures" / "faces"
GOLDEN = [FACES / "obama.jpg", FACES / "obama2.jpg", FACES / "biden.jpg"]


@pytest.fixture(scope="module")
def real_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BundleManifest]:
    if not (MODELS / "manifest.json").exists():
        pytest.skip(f"no model manifest at {MODELS} (models are built by the MODELS tools)")
    out = tmp_path_factory.mktemp("real") / "bundle-1"
    m = build_bundle(MODELS, out, version=1, golden=GOLDEN)
    return out, m


def load_manifest(path: Path) -> BundleManifest:
    return parse_manifest((path / "bundle.json").read_bytes())


def test_shipped_models_pass(real_bundle: tuple[Path, BundleManifest]) -> None:
    path, m = real_bundle
    report = run_selftest(path, m)
    assert max(report.drift.values()) < 1e-4        # same models, same runtime: same embeddings
    assert report.genuine_score >= m.matching.threshold > report.impostor_score
    assert (report.model_id, report.model_version) == (m.matching.model_id, m.matching.model_version)


def test_selftest_allocates_the_deferred_fallback_detector(real_bundle: tuple[Path, BundleManifest]) -> None:
    # the daemon allocates the still-image fallback detector only at its first use; the
    # self-test allocates it before the switch, so a model the runtime cannot plan fails here
    from kycedge.vision import Pipeline

    loaded: list[Pipeline] = []

    def load(p: Path) -> Pipeline:
        pipe = Pipeline.load(p)
        assert pipe.fallback is not None
        assert pipe.fallback.model.deferred
        loaded.append(pipe)
        return pipe

    path, m = real_bundle
    run_selftest(path, m, load=load)
    assert loaded
    assert loaded[0].fallback is not None
    assert not loaded[0].fallback.model.deferred


def test_embeddings_that_drifted_fail(tmp_path: Path, real_bundle: tuple[Path, BundleManifest]) -> None:
    def swap(o: dict[str, Any]) -> None:
        imgs = o["selftest"]["images"]
        imgs[0]["embedding"], imgs[2]["embedding"] = imgs[2]["embedding"], imgs[0]["embedding"]
    p = bundle_variant(real_bundle[0], tmp_path / "b", 2, swap)
    with pytest.raises(SelfTestError, match=r"golden image g0-obama: expected 1 - cosine to the bundle's"):
        run_selftest(p, load_manifest(p))


def test_pair_that_does_not_separate_fails(tmp_path: Path, real_bundle: tuple[Path, BundleManifest]) -> None:
    def impostor_is_genuine(o: dict[str, Any]) -> None:
        o["selftest"]["impostor"] = list(o["selftest"]["genuine"])
    p = bundle_variant(real_bundle[0], tmp_path / "b", 2, impostor_is_genuine)
    with pytest.raises(SelfTestError, match=r"impostor pair .*expected score <"):
        run_selftest(p, load_manifest(p))


def test_threshold_mismatch_fails(tmp_path: Path, real_bundle: tuple[Path, BundleManifest]) -> None:
    def lower(o: dict[str, Any]) -> None:
        o["matching"]["threshold"] = -0.5
    p = bundle_variant(real_bundle[0], tmp_path / "b", 2, lower)
    with pytest.raises(SelfTestError, match=r"threshold: expected -0.5"):
        run_selftest(p, load_manifest(p))


def test_tampered_model_fails_to_load(tmp_path: Path, real_bundle: tuple[Path, BundleManifest]) -> None:
    p = tmp_path / "b"
    shutil.copytree(real_bundle[0], p)
    m = load_manifest(p)
    emb = next(e for e in m.models if e.role == "embedder")
    data = bytearray((p / emb.file).read_bytes())
    data[len(data) // 2] ^= 0x01
    (p / emb.file).write_bytes(bytes(data))
    with pytest.raises(SelfTestError, match="staged models failed to load"):
        run_selftest(p, m)


@pytest.mark.slow
def test_unit_on_real_models_survives_a_failing_bundle(tmp_path: Path,
                                                       real_bundle: tuple[Path, BundleManifest]) -> None:
    """End to end with the real pipeline as the daemon: v2 fails its self-test, the unit
    keeps serving v1; v3 (good) installs and serves."""
    from kycedge.vision import Pipeline

    fleet = Fleet(tmp_path / "fleet")
    try:
        served: dict[str, Any] = {}

        def reload_models(path: Path) -> None:
            served["pipe"] = Pipeline.load(path)      # loaded fully before it replaces the old one

        def health() -> bool:
            return bool(served["pipe"].process_image_bytes(GOLDEN[0].read_bytes()).ok)

        publish_dir(fleet, real_bundle[0], 1)
        agent = UpdateAgent(unit_config(tmp_path, fleet), device_id="unit-1", reload_models=reload_models,
                            health_check=health)
        assert agent.check_now().bundle_version == 1

        def swap(o: dict[str, Any]) -> None:
            imgs = o["selftest"]["images"]
            imgs[0]["embedding"], imgs[2]["embedding"] = imgs[2]["embedding"], imgs[0]["embedding"]
        publish_dir(fleet, bundle_variant(real_bundle[0], tmp_path / "b2", 2, swap), 2)
        st = agent.check_now()
        assert (st.outcome, st.reason) == ("failed", "selftest-failed"), st
        res = served["pipe"].process_image_bytes(GOLDEN[1].read_bytes())
        assert res.ok
        assert served["pipe"].model_id == real_bundle[1].matching.model_id
        assert agent.store.installed_version() == 1

        publish_dir(fleet, bundle_variant(real_bundle[0], tmp_path / "b3", 3), 3)
        st = agent.check_now()
        assert (st.outcome, st.bundle_version) == ("updated", 3), st
        assert served["pipe"].process_image_bytes(GOLDEN[2].read_bytes()).ok
    finally:
        fleet.close()


@pytest.mark.slow
def test_templates_carry_the_model_version_the_unit_runs(tmp_path: Path,
                                                         real_bundle: tuple[Path, BundleManifest]) -> None:
    """After an update the templates name the new model version, and the carrier matches a
    probe only against a reference of the same version (model-mismatch otherwise)."""
    import json

    import numpy as np
    from kycedge.protocol.envelope import Template
    from kycedge.vision import Pipeline

    models2 = tmp_path / "models2"
    shutil.copytree(MODELS, models2)
    manifest = json.loads((models2 / "manifest.json").read_text())
    manifest["pipeline"]["model_version"] = "2021dec-kycedge.99"
    (models2 / "manifest.json").write_text(json.dumps(manifest))
    b2 = build_bundle(models2, tmp_path / "bundle-2", version=2, golden=GOLDEN)

    fleet = Fleet(tmp_path / "fleet")
    try:
        served: dict[str, Any] = {}

        def reload_models(path: Path) -> None:
            served["pipe"] = Pipeline.load(path)

        publish_dir(fleet, real_bundle[0], 1)
        agent = UpdateAgent(unit_config(tmp_path, fleet), device_id="unit-1", reload_models=reload_models,
                            health_check=lambda: True)
        assert agent.check_now().bundle_version == 1
        old = served["pipe"]
        ref_v1 = old.process_image_bytes(GOLDEN[0].read_bytes()).template

        publish_dir(fleet, tmp_path / "bundle-2", 2)
        st = agent.check_now()
        assert (st.outcome, st.model_version) == ("updated", "2021dec-kycedge.99"), st
        pipe = served["pipe"]
        res = pipe.process_image_bytes(GOLDEN[1].read_bytes())
        assert res.ok
        assert res.template is not None
        t = Template.from_array(res.template, model_id=pipe.model_id, model_version=pipe.model_version)
        assert (t.model_id, t.model_version) == (b2.matching.model_id, "2021dec-kycedge.99")
        probe = np.frombuffer(t.vector, dtype="<f4")
        v1 = (real_bundle[1].matching.model_id, real_bundle[1].matching.model_version)
        assert judge(probe, (t.model_id, t.model_version), ref_v1, v1, pipe.threshold).outcome == \
            "model-mismatch"
        ref_v2 = pipe.process_image_bytes(GOLDEN[0].read_bytes()).template
        assert judge(probe, (t.model_id, t.model_version), ref_v2, (t.model_id, t.model_version),
                      pipe.threshold).outcome == "match"
    finally:
        fleet.close()


def test_cli_bundle_build(tmp_path: Path, real_bundle: tuple[Path, BundleManifest],
                          capsys: pytest.CaptureFixture[str]) -> None:
    from kycedge.fleet.cli import main

    out = tmp_path / "b"
    assert main(["bundle", "build", "--models", str(MODELS), "--version", "4", "--out", str(out),
                 "--golden", *map(str, GOLDEN)]) == 0
    assert "threshold" in capsys.readouterr().out
    m = load_manifest(out)
    assert m.bundle_version == 4
    assert m.matching == real_bundle[1].matching
    assert main(["bundle", "build", "--models", str(MODELS), "--version", "5", "--out", str(out),
                 "--golden", *map(str, GOLDEN)]) == 2                     # refuses to overwrite
    bad = tmp_path / "noface.jpg"
    bad.write_bytes(b"not an image")
    assert main(["bundle", "build", "--models", str(MODELS), "--version", "5", "--out", str(tmp_path / "c"),
                 "--golden", str(GOLDEN[0]), str(GOLDEN[1]), str(bad)]) == 2
    assert "golden image" in capsys.readouterr().err
