"""Algorithm agility and key protection at the receiver: ES256 beside Ed25519, version-1
envelopes still accepted, the header's protection claim checked against the registry, and
the tenant policy ``require_hardware_key``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from kycedge import crypto
from kycedge.carrier.registry import RegistryError

from .helpers import TENANT, make_world


@dataclass(frozen=True)
class Claiming:
    """A software ES256 key whose envelopes claim ``tpm`` (a lying or misconfigured unit)."""

    key: crypto.EcSigningKey
    algorithm: crypto.SignatureAlgorithm = "es256"
    protection: crypto.KeyProtection = "tpm"

    def public_key(self) -> crypto.AnyVerifyKey:
        return self.key.public_key()

    def sign(self, data: bytes) -> bytes:
        return crypto.sign_es256(self.key, data)


def test_es256_and_ed25519_units_side_by_side(tmp_path: Path) -> None:
    world = make_world(tmp_path, str(tmp_path / "c.db"))
    ed = world.unit("unit-ed")
    es = world.unit("unit-es", key=crypto.generate_es256_key())
    for unit in (ed, es, ed, es):
        out = world.receiver.handle(unit.seal())
        assert out.status == "accepted", out
    recs = {d.device_id: d for d in world.receiver.registry.list(TENANT)}
    assert (recs["unit-ed"].signature_alg, recs["unit-ed"].key_protection) == ("ed25519", "software")
    assert (recs["unit-es"].signature_alg, recs["unit-es"].key_protection) == ("es256", "software")
    assert len(recs["unit-es"].public_key) == 65


def test_version_1_envelopes_still_accepted(tmp_path: Path) -> None:
    world = make_world(tmp_path, str(tmp_path / "c.db"))
    unit = world.unit()
    data = unit.seal(format_version=1)
    assert data[4] == 1
    assert world.receiver.handle(data).status == "accepted"


def test_es256_envelope_under_an_ed25519_enrolment_is_refused(tmp_path: Path) -> None:
    world = make_world(tmp_path, str(tmp_path / "c.db"))
    enrolled = world.unit("unit-x")
    impostor = world.unit("unit-x", enroll=False, key=crypto.generate_es256_key())
    assert world.receiver.handle(impostor.seal()).reason == "unknown-device"  # other key id
    assert world.receiver.handle(enrolled.seal()).status == "accepted"


def test_protection_claim_must_match_the_enrolment(tmp_path: Path) -> None:
    world = make_world(tmp_path, str(tmp_path / "c.db"))
    liar = world.unit("unit-claims-tpm", key=Claiming(crypto.generate_es256_key()))
    out = world.receiver.handle(liar.seal())
    assert (out.status, out.reason) == ("rejected", "bad-signature")


def test_require_hardware_key_policy(tmp_path: Path) -> None:
    db = str(tmp_path / "c.db")
    before = make_world(tmp_path, db)
    old = before.unit("unit-old")  # enrolled with a software key before the policy
    world = make_world(tmp_path, db, require_hardware_key=(TENANT,))
    with pytest.raises(RegistryError) as ei:
        world.unit("unit-new")
    assert ei.value.reason == "software-key-refused"
    world.unit("unit-new", key=crypto.generate_signing_key(), tenant="other-tenant")  # other tenants: fine
    out = world.receiver.handle(old.seal())
    assert (out.status, out.reason) == ("rejected", "revoked-device")
    hw = world.unit("unit-hw", key=Claiming(crypto.generate_es256_key()), key_protection="tpm")
    assert world.receiver.handle(hw.seal()).status == "accepted"


def test_tpm_protection_requires_es256(tmp_path: Path) -> None:
    world = make_world(tmp_path, str(tmp_path / "c.db"))
    with pytest.raises(RegistryError):
        world.unit("unit-ed-tpm", key_protection="tpm")


def test_software_key_rotation_by_handover(tmp_path: Path) -> None:
    from kycedge.carrier.handover import accept_handover
    from kycedge.unit import identity as keys
    from kycedge.unit.rotation import commit, prepare

    world = make_world(tmp_path, str(tmp_path / "c.db"))
    state = tmp_path / "unit"
    ident, _ = keys.init_identity(state)
    world.receiver.registry.enroll(TENANT, "unit-r", ident.public_key)
    handover = prepare(state, TENANT, "unit-r")
    assert keys.load_identity(state).key_id == ident.key_id  # the old key signs until commit
    rec = accept_handover(world.receiver.registry, handover)
    assert (rec.signature_alg, rec.key_protection) == ("ed25519", "software")
    new = commit(state)
    assert new.key_id == rec.key_id != ident.key_id
    unit = world.unit("unit-r", enroll=False, key=new.signer)
    assert world.receiver.handle(unit.seal()).status == "accepted"
    keys.init_identity(tmp_path / "stranger")  # a key the carrier never enrolled for unit-r
    with pytest.raises(RegistryError) as ei:
        accept_handover(world.receiver.registry, prepare(tmp_path / "stranger", TENANT, "unit-r"))
    assert ei.value.reason == "bad-handover"


def test_handover_respects_the_hardware_policy(tmp_path: Path) -> None:
    from kycedge.carrier.handover import accept_handover
    from kycedge.unit import identity as keys
    from kycedge.unit.rotation import prepare

    db = str(tmp_path / "c.db")
    before = make_world(tmp_path, db)
    state = tmp_path / "unit"
    ident, _ = keys.init_identity(state)
    before.receiver.registry.enroll(TENANT, "unit-p", ident.public_key)
    world = make_world(tmp_path, db, require_hardware_key=(TENANT,))
    with pytest.raises(RegistryError) as ei:
        accept_handover(world.receiver.registry, prepare(state, TENANT, "unit-p"))
    assert ei.value.reason == "software-key-refused"


def test_config_validates_policy_and_tcti(tmp_path: Path) -> None:
    from kycedge.carrier.config import CarrierConfig
    from kycedge.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"require_hardware_key\[1\]"):
        CarrierConfig(state_dir=tmp_path, require_hardware_key=("acme", "Not A Tenant"))
