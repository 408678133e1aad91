"""Key rotation through root: units follow it on their next refresh, nobody touches them."""

from __future__ import annotations

import json
from pathlib import Path

from kycedge.fleet.bundle_build import set_rollout, sign_bundle
from kycedge.protocol.rollout import Rollout
from kycedge.unit.updates.agent import UpdateAgent

from tests.unit.updates.helpers import FakeDaemon, Fleet


def test_targets_key_rotation(unit_on_v1: UpdateAgent, fleet: Fleet, daemon: FakeDaemon) -> None:
    old_signers = fleet.repo.signers("targets")
    old_keyids = set(fleet.repo.root().signed.roles["targets"].keyids)
    new_key = fleet.repo.rotate_key("targets")
    assert fleet.repo.root().signed.version == 2
    fleet.release(2)
    st = unit_on_v1.check_now()
    assert (st.outcome, st.bundle_version) == ("updated", 2), st
    # The unit now trusts root v2 (cached in its state dir), provisioned root untouched.
    tuf_dir = unit_on_v1.config.state_dir / "tuf"
    trusted = json.loads((tuf_dir / "root.json").read_text())
    assert trusted["signed"]["version"] == 2
    assert trusted["signed"]["roles"]["targets"]["keyids"] == [new_key.keyid]
    assert json.loads(unit_on_v1.config.trusted_root.read_text())["signed"]["version"] == 1

    # The revoked targets key can no longer publish anything the unit accepts.
    sign_bundle(fleet.repo, fleet.bundle(3), signers=old_signers)
    set_rollout(fleet.repo, Rollout(3, None), signers=old_signers)
    fleet.repo.publish(fleet.www)
    st = unit_on_v1.check_now()
    assert (st.outcome, st.reason) == ("failed", "bad-signature"), st
    assert unit_on_v1.store.installed_version() == 2
    assert not old_keyids & set(fleet.repo.root().signed.roles["targets"].keyids)


def test_root_key_rotation_is_followed(unit_on_v1: UpdateAgent, fleet: Fleet, daemon: FakeDaemon) -> None:
    fleet.repo.rotate_key("root")
    fleet.repo.rotate_key("timestamp")
    fleet.release(2)
    st = unit_on_v1.check_now()
    assert (st.outcome, st.bundle_version) == ("updated", 2), st
    trusted = json.loads((unit_on_v1.config.state_dir / "tuf" / "root.json").read_text())
    assert trusted["signed"]["version"] == 3


def test_forged_root_rotation_rejected(unit_on_v1: UpdateAgent, fleet: Fleet, daemon: FakeDaemon,
                                       tmp_path: Path) -> None:
    # An attacker with one stolen targets key cannot rotate root: root needs 2 of 2 root keys.
    from kycedge.fleet.repository import FleetRepository

    thief = FleetRepository(fleet.repo.repo_dir, tmp_path / "thief-keys")
    own = thief.new_key("root")
    root = fleet.repo.root()
    root.signed.version += 1
    root.signed.add_key(own, "targets")
    root.signatures.clear()
    root.sign(thief.signer(own.keyid))
    (fleet.www / "metadata" / "2.root.json").write_bytes(root.to_bytes())
    fleet.release(2)
    st = unit_on_v1.check_now()
    assert (st.outcome, st.reason) == ("failed", "bad-signature"), st
    assert unit_on_v1.store.installed_version() == 1
