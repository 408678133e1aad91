"""Every attack or failure leaves the unit on its previous bundle, still serving."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from kycedge.fleet.bundle_build import set_rollout, sign_bundle
from kycedge.fleet.repository import RoleSpec
from kycedge.protocol.rollout import Rollout
from kycedge.unit.updates.agent import UpdateAgent
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata
from tuf.api.serialization.json import JSONSerializer

from .helpers import FakeDaemon, Fleet, make_agent

EMB2 = r"/bundles/2/[0-9a-f]{64}\.emb\.tflite$"


def assert_on_v1(agent: UpdateAgent, daemon: FakeDaemon) -> None:
    cur = agent.store.current()
    assert cur is not None
    assert cur.name.startswith("b000001-")
    assert agent.store.installed_version() == 1
    assert daemon.serve(cur) == "emb@v1"          # still serving on the previous models
    assert not list(agent.store.sets_dir.glob(".staging-*"))


def target_file(fleet: Fleet, version: int, name: str) -> Path:
    (p,) = (fleet.www / "targets" / "bundles" / str(version)).glob(f"*.{name}")
    return p


def rewrite(path: Path, md: Metadata) -> None:  # type: ignore[type-arg]
    path.write_bytes(md.to_bytes(JSONSerializer(compact=False)))


def test_bad_signature(unit_on_v1: UpdateAgent, fleet: Fleet, daemon: FakeDaemon) -> None:
    fleet.release(2)
    ts_path = fleet.www / "metadata" / "timestamp.json"
    md = Metadata.from_file(str(ts_path))
    md.sign(CryptoSigner.generate_ed25519())           # an attacker's key
    rewrite(ts_path, md)
    st = unit_on_v1.check_now()
    assert (st.outcome, st.reason) == ("failed", "bad-signature"), st
    assert "timestamp" in st.message
    assert_on_v1(unit_on_v1, daemon)


def test_tampered_metadata_signature_no_longer_verifies(unit_on_v1: UpdateAgent, fleet: Fleet,
                                                        daemon: FakeDaemon) -> None:
    fleet.release(2)
    (snap,) = sorted((fleet.www / "metadata").glob("*.snapshot.json"))[-1:]
    md = Metadata.from_file(str(snap))
    md.signed.expires = md.signed.expires.replace(year=md.signed.expires.year + 5)  # keep old signature
    rewrite(snap, md)
    st = unit_on_v1.check_now()
    assert st.outcome == "failed"
    assert st.reason in ("hash-mismatch", "bad-signature")    # timestamp pins the snapshot hash
    assert_on_v1(unit_on_v1, daemon)


def test_too_few_signatures(tmp_path: Path, daemon: FakeDaemon) -> None:
    fleet = Fleet(tmp_path / "fleet", {"root": RoleSpec(2, 2), "targets": RoleSpec(2, 2)})
    try:
        fleet.release(1)
        agent = make_agent(tmp_path, fleet, daemon)
        assert agent.check_now().outcome == "updated"
        one_key = fleet.repo.signers("targets")[:1]
        sign_bundle(fleet.repo, fleet.bundle(2), signers=one_key)
        set_rollout(fleet.repo, Rollout(2, None), signers=one_key)
        fleet.repo.publish(fleet.www)
        st = agent.check_now()
        assert (st.outcome, st.reason) == ("failed", "signature-threshold"), st
        assert "1/2" in st.message
        assert_on_v1(agent, daemon)
        # Both targets keys sign: the same bundle now installs.
        set_rollout(fleet.repo, Rollout(2, None))
        fleet.repo.publish(fleet.www)
        st = agent.check_now()
        assert (st.outcome, st.bundle_version) == ("updated", 2), st
    finally:
        fleet.close()


def test_expired_metadata_freeze(unit_on_v1: UpdateAgent, fleet: Fleet, daemon: FakeDaemon) -> None:
    fleet.release(2, publish=False)
    fleet.repo.expiry_days["timestamp"] = -1.0        # an attacker replays stale, expired metadata
    fleet.repo.refresh_timestamp()
    fleet.repo.publish(fleet.www)
    st = unit_on_v1.check_now()
    assert (st.outcome, st.reason) == ("failed", "expired-metadata"), st
    assert_on_v1(unit_on_v1, daemon)


def test_rollback_attack_older_metadata(tmp_path: Path, unit_on_v1: UpdateAgent, fleet: Fleet,
                                        daemon: FakeDaemon) -> None:
    old = tmp_path / "www-v1"
    shutil.copytree(fleet.www, old)
    fleet.release(2)
    assert unit_on_v1.check_now().bundle_version == 2
    v2_loaded = daemon.loaded
    shutil.rmtree(fleet.www)
    shutil.copytree(old, fleet.www)                     # serve the older (validly signed) release
    st = unit_on_v1.check_now()
    assert (st.outcome, st.reason) == ("failed", "rollback-attack"), st
    assert unit_on_v1.store.installed_version() == 2
    assert daemon.loaded == v2_loaded == unit_on_v1.store.current()


def test_mix_and_match(unit_on_v1: UpdateAgent, fleet: Fleet, daemon: FakeDaemon) -> None:
    fleet.release(2)
    meta = fleet.www / "metadata"
    versions = sorted(int(p.name.split(".")[0]) for p in meta.glob("*.targets.json"))
    newest, older = versions[-1], versions[-3]          # older: targets of release 1
    (meta / f"{newest}.targets.json").write_bytes((meta / f"{older}.targets.json").read_bytes())
    st = unit_on_v1.check_now()
    assert (st.outcome, st.reason) == ("failed", "mix-and-match"), st
    assert f"v{newest}" in st.message
    assert f"v{older}" in st.message
    assert_on_v1(unit_on_v1, daemon)


def test_wrong_hash(unit_on_v1: UpdateAgent, fleet: Fleet, daemon: FakeDaemon) -> None:
    fleet.release(2)
    p = target_file(fleet, 2, "emb.tflite")
    data = bytearray(p.read_bytes())
    data[100] ^= 0xFF                                   # same length, one byte flipped
    p.write_bytes(bytes(data))
    st = unit_on_v1.check_now()
    assert (st.outcome, st.reason) == ("failed", "hash-mismatch"), st
    assert_on_v1(unit_on_v1, daemon)


def test_oversized_download(unit_on_v1: UpdateAgent, fleet: Fleet, daemon: FakeDaemon) -> None:
    fleet.release(2)
    p = target_file(fleet, 2, "emb.tflite")
    p.write_bytes(p.read_bytes() + b"\0" * 5_000_000)   # endless-data attack
    st = unit_on_v1.check_now()
    assert (st.outcome, st.reason) == ("failed", "oversized"), st
    assert_on_v1(unit_on_v1, daemon)
    assert not list((unit_on_v1.config.state_dir / "partial").glob("*"))


def test_bundle_larger_than_unit_limit(tmp_path: Path, fleet: Fleet, daemon: FakeDaemon) -> None:
    fleet.release(1)
    agent = make_agent(tmp_path, fleet, daemon, max_bundle_bytes=2**20)
    assert agent.check_now().bundle_version == 1
    sign_bundle(fleet.repo, fleet.bundle(2, size=1_200_000))
    set_rollout(fleet.repo, Rollout(2, None))
    fleet.repo.publish(fleet.www)
    st = agent.check_now()
    assert (st.outcome, st.reason) == ("failed", "oversized"), st
    assert_on_v1(agent, daemon)


def test_truncated_download_resumes_with_range(unit_on_v1: UpdateAgent, fleet: Fleet,
                                               daemon: FakeDaemon) -> None:
    fleet.release(2)
    fleet.faults.truncate[EMB2] = [1, 7000]     # first transfer breaks off after 7000 bytes
    st = unit_on_v1.check_now()
    assert (st.outcome, st.bundle_version) == ("updated", 2), st
    ranges = [r for path, r in fleet.faults.requests if re.search(EMB2, path)]
    assert ranges == [None, "bytes=7000-"]
    assert unit_on_v1.last_client.fetcher.resumed == 1


def test_truncated_download_resumed_by_the_next_check(tmp_path: Path, fleet: Fleet,
                                                      daemon: FakeDaemon) -> None:
    fleet.release(1)
    agent = make_agent(tmp_path, fleet, daemon, download_retries=0)
    assert agent.check_now().bundle_version == 1
    fleet.release(2)
    fleet.faults.truncate[EMB2] = [1, 9000]
    st = agent.check_now()
    assert (st.outcome, st.reason) == ("failed", "unreachable"), st
    assert_on_v1(agent, daemon)
    partials = list((agent.config.state_dir / "partial").glob("*.part"))
    assert [p.stat().st_size for p in partials] == [9000]
    st = agent.check_now()
    assert (st.outcome, st.bundle_version) == ("updated", 2), st
    ranges = [r for path, r in fleet.faults.requests if re.search(EMB2, path)]
    assert ranges == [None, "bytes=9000-"]
    assert not list((agent.config.state_dir / "partial").glob("*.part"))


def test_unreachable_repository(tmp_path: Path, unit_on_v1: UpdateAgent, fleet: Fleet,
                                daemon: FakeDaemon) -> None:
    fleet.release(2)
    fleet.close()                                       # the repository goes away
    st = unit_on_v1.check_now()
    assert (st.outcome, st.reason) == ("failed", "unreachable"), st
    assert_on_v1(unit_on_v1, daemon)


def test_selftest_failure(tmp_path: Path, fleet: Fleet, daemon: FakeDaemon) -> None:
    from kycedge.protocol.update_errors import SelfTestError

    def selftest(path: Path, manifest: object) -> None:
        if path.name.startswith("b000002"):
            raise SelfTestError("golden image g0: expected 1 - cosine <= 0.02, got 0.4")

    fleet.release(1)
    agent = make_agent(tmp_path, fleet, daemon, selftest=selftest)
    assert agent.check_now().bundle_version == 1
    fleet.release(2)
    st = agent.check_now()
    assert (st.outcome, st.reason) == ("failed", "selftest-failed"), st
    assert_on_v1(agent, daemon)


def test_health_check_failure_rolls_back(unit_on_v1: UpdateAgent, fleet: Fleet, daemon: FakeDaemon) -> None:
    fleet.release(2)
    calls = iter([True, False])
    daemon.healthy = lambda: next(calls)
    st = unit_on_v1.check_now()
    assert (st.outcome, st.reason) == ("rolled-back", "health-check-failed"), st
    assert "2/3" in st.message
    assert_on_v1(unit_on_v1, daemon)
    assert [r.state for r in daemon.reports][-4:] == ["self-testing", "switching", "trial", "idle"]
    # The rolled-back bundle is not retried; a newer one is.
    daemon.healthy = lambda: True
    st = unit_on_v1.check_now()
    assert (st.outcome, st.reason) == ("rolled-back", "health-check-failed"), st  # still says why
    assert "rejected here before" in st.message
    fleet.release(3)
    assert unit_on_v1.check_now().bundle_version == 3


def test_new_models_fail_to_load_rolls_back(unit_on_v1: UpdateAgent, fleet: Fleet,
                                            daemon: FakeDaemon) -> None:
    fleet.release(2)
    daemon.fail_load_prefix = "b000002"                 # the interpreter refuses the new model
    st = unit_on_v1.check_now()
    assert (st.outcome, st.reason) == ("rolled-back", "load-failed"), st
    assert_on_v1(unit_on_v1, daemon)


def test_crash_loop_after_switch_rolls_back(tmp_path: Path, unit_on_v1: UpdateAgent, fleet: Fleet,
                                            daemon: FakeDaemon) -> None:
    fleet.release(2)
    def crash() -> bool:
        raise SystemExit("daemon dies during the trial")  # the process would exit here
    daemon.healthy = crash
    with pytest.raises(SystemExit):
        unit_on_v1.check_now()
    assert unit_on_v1.store.journal().state == "trial"
    # systemd restarts the daemon again and again; each start runs recovery first.
    for _ in range(unit_on_v1.config.max_trial_boots):
        fresh = make_agent(tmp_path, fleet, FakeDaemon())
        assert fresh.startup().action == "trial"
    fresh = make_agent(tmp_path, fleet, daemon)
    rec = fresh.startup()
    assert (rec.action, rec.reason) == ("rolled-back", "crash-loop")
    assert fresh.status.outcome == "rolled-back"
    daemon.reload_models(fresh.store.current())          # the daemon now loads what recovery chose
    assert_on_v1(fresh, daemon)


@pytest.mark.parametrize("percent", [0.0, 100.0])
def test_rollout_percentage(unit_on_v1: UpdateAgent, fleet: Fleet, daemon: FakeDaemon,
                            percent: float) -> None:
    fleet.release(2, percent=percent, stable=1)
    st = unit_on_v1.check_now()
    assert st.bundle_version == (2 if percent == 100.0 else 1)
