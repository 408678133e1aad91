"""The carrier's receipt key inside a real SoftHSM2 token: generated there by `keys init`,
receipts signed there, verified by units with the public key exactly as before."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from kycedge import crypto
from kycedge.carrier.config import CarrierConfig
from kycedge.carrier.keyring import CarrierKeys, init_keys
from kycedge.carrier.receiver import Receiver
from kycedge.core.errors import ConfigError
from kycedge.protocol.envelope import CarrierKey, verify_receipt
from support import softhsm

from .helpers import TENANT, Clock, Unit

pytestmark = [pytest.mark.hsm]
WHY = softhsm.missing()


def _config(tmp_path: Path, request: pytest.FixtureRequest) -> CarrierConfig:
    if WHY:
        pytest.skip(WHY)
    label = "r-" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16]
    return CarrierConfig(state_dir=tmp_path / "carrier", receipt_hsm_module=softhsm.MODULE,
                         receipt_hsm_token=softhsm.token_label(), receipt_hsm_key=label,
                         receipt_hsm_pin_file=softhsm.pin_file(tmp_path))


def test_receipts_signed_in_the_hsm_verify_on_the_unit(tmp_path: Path,
                                                        request: pytest.FixtureRequest) -> None:
    config = _config(tmp_path, request)
    lines = init_keys(config)
    (line,) = [x for x in lines if x.startswith("receipt ")]
    assert line.endswith("ed25519 hsm (new)")
    assert not config.receipt_key_path.exists()  # no private receipt key file anywhere
    published = crypto.load_verify_key(config.receipt_key_path.with_name("receipt.pub"))
    again = [x for x in init_keys(config) if x.startswith("receipt ")]
    assert again == [line.removesuffix(" (new)")]  # second run: the same key, not a new one
    keys = CarrierKeys.load(config)
    assert keys.receipt_key_protection == "pkcs11"
    assert keys.receipt_key_id == crypto.key_id(published)

    receiver = Receiver.from_config(config, clock=Clock())
    try:
        receiver.registry.enroll(TENANT, "unit-1", crypto.public_key_bytes(
            (k := crypto.generate_signing_key()).public_key()))
        kid = receiver.keys.newest_hpke_key_id
        unit = Unit("unit-1", k, CarrierKey.from_public_key(receiver.keys.hpke[kid].public_key()))
        out = receiver.handle(unit.seal())
        assert out.status == "accepted"
        r = verify_receipt(out.receipt, {crypto.key_id(published): published}, expected_device_id="unit-1")
        assert r.reason == out.reason
    finally:
        receiver.close()


def test_hsm_config_must_be_complete(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="receipt_hsm_pin_file"):
        CarrierConfig(state_dir=tmp_path, receipt_hsm_module=softhsm.MODULE, receipt_hsm_token="t")
