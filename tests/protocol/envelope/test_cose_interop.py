"""Interoperability: pycose (an independent COSE implementation) verifies our COSE_Sign1,
and our parser verifies pycose's."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from kycedge import crypto
from kycedge.core.errors import EnvelopeError
from kycedge.protocol.envelope import open_envelope, seal, sign_receipt, verify_receipt
from kycedge.protocol.envelope.cose import CT_RECEIPT, CT_TEMPLATE, parse_sign1, verify_sign1
from kycedge.protocol.envelope.seal import decode_payload
from pycose.algorithms import EdDSA
from pycose.headers import KID, Algorithm, ContentType
from pycose.keys import OKPKey
from pycose.keys.curves import Ed25519
from pycose.messages import Sign1Message

from tests.protocol.envelope.conftest import Keys, make_payload


def _pycose_decode(data: bytes) -> Sign1Message:
    """pycose 1.1's CoseMessage.decode expects a list, but cbor2 6 returns tagged arrays as
    tuples (and maps inside tags as immutable mappings); hand pycose a list and a dict
    (our bytes are untouched)."""
    item = cbor2.loads(data)
    assert item.tag == 18
    protected, unprotected, payload, signature = item.value
    msg = Sign1Message.from_cose_obj([protected, dict(unprotected), payload, signature], True)
    assert isinstance(msg, Sign1Message)
    return msg


def _pycose_key(sk: crypto.SigningKey, *, private: bool = False) -> OKPKey:
    kw: dict[str, Any] = {"crv": Ed25519, "x": crypto.public_key_bytes(sk.public_key())}
    if private:
        kw["d"] = crypto.private_key_bytes(sk)
    return OKPKey(**kw)


def test_pycose_verifies_envelope_signed_part(keys: Keys) -> None:
    sealed = seal(make_payload(), tenant="acme", device_id="dev-0001", sequence=1,
                  signing_key=keys.device, carrier_key=keys.carrier_key)
    signed = open_envelope(sealed.data, device_public_key=keys.device.public_key(),
                           carrier_private_keys=keys.carrier_private).signed
    msg = _pycose_decode(signed)
    assert msg.phdr[Algorithm] is EdDSA or msg.phdr[Algorithm] == EdDSA
    assert msg.phdr[KID].hex() == crypto.key_id(keys.device.public_key())
    assert msg.phdr[ContentType] == CT_TEMPLATE
    msg.key = _pycose_key(keys.device)
    assert msg.verify_signature()
    header, payload = decode_payload(msg.payload)
    assert header == sealed.header
    assert payload == make_payload()
    msg.key = _pycose_key(crypto.generate_signing_key())
    assert not msg.verify_signature()


def test_pycose_verifies_receipt(keys: Keys) -> None:
    from kycedge.protocol.envelope import new_message_id

    data = sign_receipt(keys.receipt, message_id=new_message_id(), tenant="acme", device_id="d",
                        reason="accepted")
    msg = _pycose_decode(data)
    msg.key = _pycose_key(keys.receipt)
    assert msg.verify_signature()
    assert msg.phdr[ContentType] == CT_RECEIPT


@pytest.mark.parametrize("content_type", [CT_TEMPLATE, CT_RECEIPT])
def test_we_verify_pycose_sign1(keys: Keys, content_type: str) -> None:
    kid = bytes.fromhex(crypto.key_id(keys.device.public_key()))
    msg = Sign1Message(phdr={Algorithm: EdDSA, ContentType: content_type, KID: kid}, payload=b"\xa0")
    msg.key = _pycose_key(keys.device, private=True)
    data = msg.encode()
    part = parse_sign1(data, what="pycose", content_type=content_type)
    verify_sign1(part, keys.device.public_key())
    assert part.payload == b"\xa0"
    with pytest.raises(EnvelopeError) as ei:
        verify_sign1(parse_sign1(data[:-1] + bytes([data[-1] ^ 1]), what="x", content_type=content_type),
                     keys.device.public_key())
    assert ei.value.reason == "bad-signature"


def test_receipt_from_pycose_is_accepted(keys: Keys) -> None:
    """A receipt produced by another implementation verifies with ours (same bytes rules)."""
    from kycedge.protocol.envelope import _cbor

    ckid = bytes.fromhex(crypto.key_id(keys.receipt.public_key()))
    body = _cbor.encode({"v": 1, "mid": bytes(16), "tenant": "acme", "device": "d", "status": "rejected",
                         "reason": "stale", "score": None, "threshold": None, "model_id": None,
                         "model_version": None, "issued_at_ms": 1_764_000_000_000, "ckid": ckid})
    msg = Sign1Message(phdr={Algorithm: EdDSA, ContentType: CT_RECEIPT, KID: ckid}, payload=body)
    msg.key = _pycose_key(keys.receipt, private=True)
    r = verify_receipt(msg.encode(), {ckid.hex(): keys.receipt.public_key()}, expected_device_id="d")
    assert r.reason == "stale"
    assert r.status == "rejected"
