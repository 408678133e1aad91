"""seal / open_envelope / peek_header: round trip and specific rejections."""

from __future__ import annotations

import dataclasses
import uuid

import numpy as np
import pytest
from kycedge import crypto
from kycedge.protocol.envelope import (
    GENESIS_DIGEST,
    MAX_ENVELOPE_BYTES,
    CarrierKey,
    EnvelopeError,
    Payload,
    Template,
    new_message_id,
    open_envelope,
    peek_header,
    seal,
)
from kycedge.protocol.envelope.header import encode_header, hpke_info

from tests.protocol.envelope.conftest import Keys, make_keys, make_payload


def _seal(keys: Keys, payload: Payload, **kw: object) -> bytes:
    args: dict[str, object] = dict(tenant="acme", device_id="dev-0001", sequence=7,
                                   signing_key=keys.device, carrier_key=keys.carrier_key)
    args.update(kw)
    return seal(payload, **args).data  # type: ignore[arg-type]


def _reason(data: bytes, keys: Keys, **kw: object) -> str:
    with pytest.raises(EnvelopeError) as ei:
        open_envelope(data, device_public_key=kw.get("device_public_key", keys.device.public_key()),  # type: ignore[arg-type]
                      carrier_private_keys=kw.get("carrier_private_keys", keys.carrier_private))  # type: ignore[arg-type]
    return ei.value.reason


def test_round_trip(keys: Keys, payload: Payload) -> None:
    sealed = seal(payload, tenant="acme", device_id="dev-0001", sequence=7,
                  signing_key=keys.device, carrier_key=keys.carrier_key)
    assert peek_header(sealed.data) == sealed.header
    assert sealed.header.device_key_id == crypto.key_id(keys.device.public_key())
    assert sealed.header.message_id.version == 7
    opened = open_envelope(sealed.data, device_public_key=keys.device.public_key(),
                           carrier_private_keys=keys.carrier_private)
    assert opened.header == sealed.header
    assert opened.payload == payload
    assert opened.digest == sealed.digest
    assert opened.payload.prev_digest == GENESIS_DIGEST
    np.testing.assert_array_equal(opened.payload.template.to_array(), payload.template.to_array())


def test_chain_digest_links(keys: Keys, payload: Payload) -> None:
    first = seal(payload, tenant="acme", device_id="d1", sequence=1, signing_key=keys.device,
                 carrier_key=keys.carrier_key)
    p2 = dataclasses.replace(payload, captured_at_ms=payload.captured_at_ms + 1, prev_digest=first.digest)
    second = seal(p2, tenant="acme", device_id="d1", sequence=2, signing_key=keys.device,
                  carrier_key=keys.carrier_key)
    o = open_envelope(second.data, device_public_key=keys.device.public_key(),
                      carrier_private_keys=keys.carrier_private)
    assert o.payload.prev_digest == first.digest


def test_wrong_keys(keys: Keys, payload: Payload) -> None:
    data = _seal(keys, payload)
    other = make_keys()
    assert _reason(data, keys, device_public_key=other.device.public_key()) == "bad-signature"
    assert _reason(data, keys, carrier_private_keys={}) == "undecryptable"
    # right id, wrong private key
    wrong = {keys.carrier_key.key_id: other.carrier}
    assert _reason(data, keys, carrier_private_keys=wrong) == "undecryptable"


def test_reencrypted_under_forged_header_is_bad_signature(keys: Keys, payload: Payload) -> None:
    """Anyone can HPKE-encrypt to the carrier: a signed payload under another header fails."""
    sealed = seal(payload, tenant="acme", device_id="dev-0001", sequence=7, signing_key=keys.device,
                  carrier_key=keys.carrier_key)
    signed = open_envelope(sealed.data, device_public_key=keys.device.public_key(),
                           carrier_private_keys=keys.carrier_private).signed
    forged = encode_header(type(sealed.header)(**{**vars(sealed.header), "sequence": 8}))
    data = forged + crypto.hpke_seal(keys.carrier_key.public_key, signed, info=hpke_info(forged))
    assert _reason(data, keys) == "bad-signature"


def test_limits_and_versions(keys: Keys, payload: Payload) -> None:
    data = _seal(keys, payload)
    assert _reason(data + bytes(MAX_ENVELOPE_BYTES), keys) == "malformed"
    assert _reason(data[:4] + b"\x03" + data[5:], keys) == "unsupported-version"
    assert _reason(data[:5] + b"\x02" + data[6:], keys) == "unsupported-version"
    assert _reason(b"XYCE" + data[4:], keys) == "malformed"
    with pytest.raises(EnvelopeError):
        peek_header(b"")
    with pytest.raises(EnvelopeError) as ei:
        _seal(keys, payload, tenant="Bad/Tenant")
    assert ei.value.reason == "malformed"
    with pytest.raises(EnvelopeError):
        _seal(keys, payload, sequence=2**63)
    with pytest.raises(EnvelopeError):
        _seal(keys, payload, message_id=uuid.uuid4())


@pytest.mark.parametrize("ref", [
    "123456789012", "rX123456789", "r-" + "1" * 20, "short", "1abcdefghijklmnopq", "r" + "a" * 64,
    "r_abc def_ghijklmnop", "rÄbcdefghijklmnopq",
    "id-19850101-1234-x", "rIdNumber-850101_1234", "rPass-1-2-3-4-5-6-7-8-9",
])
def test_reference_rejects_national_id_shapes(ref: str, payload: Payload) -> None:
    with pytest.raises(EnvelopeError):
        Payload(template=payload.template, captured_at_ms=payload.captured_at_ms, liveness=payload.liveness,
                reference=ref)


def test_template_validation() -> None:
    with pytest.raises(EnvelopeError):
        Template.from_array(np.array([np.nan] * 32), model_id="m", model_version="1")
    with pytest.raises(EnvelopeError):
        Template.from_array(np.zeros(8), model_id="m", model_version="1")
    with pytest.raises(EnvelopeError):
        Template.from_array(np.zeros((4, 8)), model_id="m", model_version="1")
    with pytest.raises(EnvelopeError):
        Template(model_id="m", model_version="1", vector=b"\x00" * 65)


def test_message_ids_are_time_ordered() -> None:
    a = new_message_id(now_ms=1_764_000_000_000)
    b = new_message_id(now_ms=1_764_000_000_001)
    assert a.bytes < b.bytes
    assert a.version == 7
    assert a.variant == uuid.RFC_4122


def test_carrier_key_id_must_match() -> None:
    k = crypto.generate_kem_key()
    with pytest.raises(crypto.KeyStoreError):
        CarrierKey(key_id="0" * 32, public_key=k.public_key())


def test_large_template_fits(keys: Keys) -> None:
    data = _seal(keys, make_payload(dim=2048))
    assert len(data) <= MAX_ENVELOPE_BYTES

