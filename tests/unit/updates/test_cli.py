"""The operator's flow through ``kycedge-fleet`` (keys, bundle sign, rollout, publish, rotate)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kycedge.fleet.cli import main
from kycedge.fleet.static_server import serve_in_thread
from kycedge.unit.updates.agent import UpdateAgent
from kycedge.unit.updates.config import UpdatesConfig

from .helpers import FakeDaemon, Fleet, file_mode


def no_selftest(path: Path, manifest: object) -> None:
    """Fake models cannot be run; the real self-test is covered in test_selftest.py."""


def test_operator_flow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo, keys, www = tmp_path / "repo", tmp_path / "keys", tmp_path / "www"
    r = ["--repo", str(repo), "--keys", str(keys)]
    assert main(["keys", "init", *r, "--root-keys", "2", "--root-threshold", "2"]) == 0
    assert all(file_mode(p) == 0o600 for p in keys.glob("*.pem"))
    assert len(list(keys.glob("*.pem"))) == 5

    # Bundles: made with the test helper (fake models); `bundle build` needs the real pipeline.
    maker = Fleet(tmp_path / "maker")
    maker.close()
    b1, b2 = maker.bundle(1), maker.bundle(2)

    assert main(["rollout", *r, "--stable", "1"]) == 2
    assert "expected bundle 1 to be signed first" in capsys.readouterr().err
    assert main(["bundle", "sign", *r, "--bundle", str(b1)]) == 0
    assert main(["bundle", "sign", *r, "--bundle", str(b1)]) == 2           # same version twice
    assert main(["rollout", *r, "--stable", "1", "--device", "unit-1"]) == 0
    assert "unit-1: bundle 1" in capsys.readouterr().out
    assert main(["publish", *r, "--out", str(www)]) == 0
    assert not list(www.rglob("*.pem"))                                     # keys never published

    server = serve_in_thread(www)
    try:
        root = tmp_path / "tuf-root.json"
        root.write_bytes((repo / "metadata" / "1.root.json").read_bytes())
        daemon = FakeDaemon()
        agent = UpdateAgent(UpdatesConfig(repository_url=f"http://127.0.0.1:{server.server_address[1]}",
                                          trusted_root=root, state_dir=tmp_path / "unit",
                                          health_interval_s=0.0, retry_backoff_s=0.0),
                            device_id="unit-1", reload_models=daemon.reload_models,
                            health_check=daemon.health, selftest=no_selftest)
        assert agent.check_now().bundle_version == 1

        assert main(["keys", "rotate", *r, "--role", "targets"]) == 0
        assert main(["bundle", "sign", *r, "--bundle", str(b2)]) == 0
        assert main(["rollout", *r, "--stable", "1", "--candidate", "2", "--percent", "0",
                     "--cohort", "pilot"]) == 0
        assert main(["publish", *r, "--out", str(www), "--refresh-timestamp"]) == 0
        assert agent.check_now().bundle_version == 1                         # not in the cohort
        pilot = UpdateAgent(UpdatesConfig(repository_url=agent.config.repository_url, trusted_root=root,
                                          state_dir=tmp_path / "pilot", cohort="pilot",
                                          health_interval_s=0.0, retry_backoff_s=0.0),
                            device_id="unit-9", reload_models=FakeDaemon().reload_models,
                            health_check=lambda: True, selftest=no_selftest)
        assert pilot.check_now().bundle_version == 2
    finally:
        server.shutdown()
        server.server_close()


def test_keys_init_refuses_bad_threshold(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["keys", "init", "--repo", str(tmp_path / "r"), "--keys", str(tmp_path / "k"),
               "--root-keys", "1", "--root-threshold", "2"])
    assert rc == 2
    assert "expected 1 <= threshold <= keys" in capsys.readouterr().err


def test_unit_cli_status_and_rollback(unit_on_v1: UpdateAgent, fleet: Fleet,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from kycedge.unit.cli import main as unit_main

    fleet.release(2)
    assert unit_on_v1.check_now().bundle_version == 2
    sd = str(unit_on_v1.config.state_dir)
    assert unit_main(["updates", "status", "--state-dir", sd, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["current"]["bundle_version"], info["previous"]["bundle_version"]) == (2, 1)
    assert unit_main(["updates", "rollback", "--state-dir", sd]) == 0
    assert unit_on_v1.store.installed_version() == 1
    assert unit_on_v1.store.journal().last_rollback["reason"] == "operator"
    assert unit_main(["updates", "recover", "--state-dir", sd]) == 0
    assert "none: current b000001" in capsys.readouterr().out
    assert unit_main(["updates", "status", "--state-dir", sd, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["rejected"] == [2]
    assert (info["rejections"]["2"]["outcome"], info["rejections"]["2"]["reason"]) == ("rolled-back",
                                                                                      "operator")
