"""Hypothesis properties: round trips, and every tampering rejected with the right reason."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import string
import uuid
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from kycedge import crypto
from kycedge.protocol.envelope import (
    MAX_SEQUENCE,
    ConsentRecord,
    EnvelopeError,
    Liveness,
    Payload,
    Template,
    _cbor,
    open_envelope,
    peek_header,
    seal,
    sign_receipt,
    verify_receipt,
)
from kycedge.protocol.envelope.cose import CT_TEMPLATE, sign1
from kycedge.protocol.envelope.header import encode_header, hpke_info
from kycedge.protocol.ids import ID_NUMBER_RE, new_message_id

from tests.protocol.envelope.conftest import make_keys, make_payload

KEYS = make_keys()
OTHER = make_keys()
PAYLOAD = make_payload()
SEALED = [
    seal(PAYLOAD, tenant="acme", device_id="dev-0001", sequence=i, signing_key=KEYS.device,
         carrier_key=KEYS.carrier_key)
    for i in range(2)
]
DATA = SEALED[0].data
RECEIPT = sign_receipt(KEYS.receipt, message_id=SEALED[0].header.message_id, tenant="acme",
                       device_id="dev-0001", reason="match", score=0.7, threshold=0.4,
                       model_id="sface", model_version="1", issued_at_ms=1_764_000_000_000)
RECEIPT_KEYS = {crypto.key_id(KEYS.receipt.public_key()): KEYS.receipt.public_key()}
# KYCEDGE_HYPOTHESIS_EXAMPLES=2000 for a longer local hunt; 150 keeps the suite fast.
FAST = settings(max_examples=int(os.environ.get("KYCEDGE_HYPOTHESIS_EXAMPLES", "150")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

tenants = st.from_regex(r"[a-z0-9][a-z0-9-]{0,31}", fullmatch=True)
device_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True)
references = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{15,63}", fullmatch=True).map(
    lambda r: ID_NUMBER_RE.sub(lambda m: "x" * len(m.group()), r))
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
vectors = st.integers(16, 2048).flatmap(lambda n: hnp.arrays(
    np.float32, n, elements=st.floats(allow_nan=False, allow_infinity=False, width=32)))
quality = st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,31}", fullmatch=True), finite, max_size=16)


def _open(data: bytes, device: Any = None, carrier: Any = None) -> Any:
    return open_envelope(data, device_public_key=device or KEYS.device.public_key(),
                         carrier_private_keys=carrier if carrier is not None else KEYS.carrier_private)


def _reason(data: bytes, **kw: Any) -> str:
    with pytest.raises(EnvelopeError) as ei:
        _open(data, **kw)
    return ei.value.reason


def _expected_outer(data: bytes) -> str:
    """The reason an altered envelope must get: the header's own verdict, else undecryptable."""
    try:
        peek_header(data)
    except EnvelopeError as e:
        return e.reason
    return "undecryptable"


@FAST
@given(tenant=tenants, device=device_ids, seq=st.integers(0, MAX_SEQUENCE), vec=vectors, q=quality,
       ref=references, when=st.integers(1_577_836_800_000, 4_102_444_800_000),
       prev=st.binary(min_size=32, max_size=32),
       live=st.tuples(st.booleans(), st.from_regex(r"[a-z][a-z0-9-]{0,31}", fullmatch=True), finite),
       mid_ms=st.integers(0, 2**48 - 1), mid_rand=st.binary(min_size=10, max_size=10),
       consent=st.one_of(st.none(), st.builds(
           ConsentRecord, text_version=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}", fullmatch=True),
           accepted_at_ms=st.integers(1_577_836_800_000, 4_102_444_800_000))))
def test_round_trip_any_template_and_header(
    tenant: str, device: str, seq: int, vec: np.ndarray, q: dict[str, float], ref: str, when: int,
    prev: bytes, live: tuple[bool, str, float], mid_ms: int, mid_rand: bytes, consent: ConsentRecord | None,
) -> None:
    payload = Payload(template=Template.from_array(vec, model_id="m.x-1", model_version="2.0+b"),
                      captured_at_ms=when, liveness=Liveness(*live), reference=ref, prev_digest=prev,
                      quality=q, consent=consent)
    mid = new_message_id(now_ms=mid_ms, random_bytes=mid_rand)
    sealed = seal(payload, tenant=tenant, device_id=device, sequence=seq, signing_key=KEYS.device,
                  carrier_key=KEYS.carrier_key, message_id=mid)
    assert peek_header(sealed.data) == sealed.header
    opened = _open(sealed.data)
    assert opened.header == sealed.header
    assert opened.header.message_id == mid
    assert opened.payload == payload
    assert opened.digest == sealed.digest


@FAST
@given(bit=st.integers(0, len(DATA) * 8 - 1))
def test_every_single_bit_flip_is_rejected(bit: int) -> None:
    data = bytearray(DATA)
    data[bit // 8] ^= 1 << (bit % 8)
    assert _reason(bytes(data)) == _expected_outer(bytes(data))


def test_bit_flips_exhaustively_in_header_and_sampled_in_body() -> None:
    hlen = len(encode_header(SEALED[0].header))
    positions = list(range(hlen * 8)) + list(range(hlen * 8, len(DATA) * 8, 7))
    for bit in positions:
        data = bytearray(DATA)
        data[bit // 8] ^= 1 << (bit % 8)
        reason = _reason(bytes(data))
        assert reason == _expected_outer(bytes(data)), bit
        if bit >= hlen * 8:
            assert reason == "undecryptable"


@FAST
@given(n=st.integers(0, len(DATA) - 1))
def test_truncation_is_rejected(n: int) -> None:
    reason = _reason(DATA[:n])
    assert reason == _expected_outer(DATA[:n])
    assert reason in {"malformed", "undecryptable"}


@FAST
@given(extra=st.binary(min_size=1, max_size=64))
def test_extension_is_rejected(extra: bytes) -> None:
    assert _reason(DATA + extra) == "undecryptable"


def test_header_swap_key_swap_wrong_carrier_key() -> None:
    hlen0 = len(encode_header(SEALED[0].header))
    hlen1 = len(encode_header(SEALED[1].header))
    swapped = SEALED[0].data[:hlen0] + SEALED[1].data[hlen1:]
    assert _reason(swapped) == "undecryptable"
    assert _reason(DATA, device=OTHER.device.public_key()) == "bad-signature"
    assert _reason(DATA, carrier={KEYS.carrier_key.key_id: OTHER.carrier}) == "undecryptable"
    assert _reason(DATA, carrier=OTHER.carrier_private) == "undecryptable"
    # the same payload signed by another device key, sealed under the original device's key id
    forged = seal(PAYLOAD, tenant="acme", device_id="dev-0001", sequence=0, signing_key=OTHER.device,
                  carrier_key=KEYS.carrier_key)
    assert _reason(forged.data) == "bad-signature"


_cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64) + 1, 2**64 - 1) | finite | st.text(max_size=20)
    | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(string.ascii_lowercase, max_size=8),
                                                                inner, max_size=5),
    max_leaves=20,
)


def _reseal_signed(signed: bytes, header: Any) -> bytes:
    hb = encode_header(header)
    return hb + crypto.hpke_seal(KEYS.carrier_key.public_key, signed, info=hpke_info(hb))


@FAST
@given(overrides=st.dictionaries(st.sampled_from(
    ["v", "tenant", "device", "dkid", "ckid", "mid", "seq", "captured_at_ms", "template", "quality",
     "liveness", "ref", "prev", "extra"]), _cbor_values, min_size=1, max_size=3),
    drop=st.sets(st.sampled_from(["v", "seq", "template", "prev"]), max_size=1))
def test_signed_but_malformed_payloads_are_rejected(overrides: dict[str, Any], drop: set[str]) -> None:
    """Past decryption and signature: any wrong field, type or key set is 'malformed' or 'bad-signature'."""
    from kycedge.protocol.envelope.seal import encode_payload

    base = _cbor.decode(encode_payload(SEALED[0].header, PAYLOAD), what="t")
    base.update(overrides)
    for k in drop:
        base.pop(k, None)
    signed = sign1(KEYS.device, _cbor.encode(base), CT_TEMPLATE)
    data = _reseal_signed(signed, SEALED[0].header)
    reason = None
    try:
        _open(data)  # an override may happen to be valid, e.g. a different quality map
    except EnvelopeError as e:
        reason = e.reason
    assert reason in {None, "malformed", "bad-signature"}


def test_splice_of_signed_payload_under_other_header_fields() -> None:
    signed = _open(DATA).signed
    for change in [{"sequence": 5}, {"tenant": "other"}, {"device_id": "dev-0002"},
                   {"message_id": new_message_id()}, {"carrier_key_id": "0" * 32}]:
        header = dataclasses.replace(SEALED[0].header, **change)
        if "carrier_key_id" in change:
            carrier = {"0" * 32: KEYS.carrier}
            assert _reason(_reseal_signed(signed, header), carrier=carrier) == "bad-signature"
        else:
            assert _reason(_reseal_signed(signed, header)) == "bad-signature"


@FAST
@given(data=st.binary(max_size=400))
def test_arbitrary_bytes_only_envelope_errors(data: bytes) -> None:
    for candidate in (data, b"KYCE\x01\x01" + data, DATA[:70] + data):
        for fn in (peek_header, _open):
            with contextlib.suppress(EnvelopeError):
                fn(candidate)
        with contextlib.suppress(EnvelopeError):
            verify_receipt(candidate, RECEIPT_KEYS, expected_device_id="dev-0001")


@FAST
@given(bit=st.integers(0, len(RECEIPT) * 8 - 1))
def test_receipt_bit_flips_rejected(bit: int) -> None:
    data = bytearray(RECEIPT)
    data[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(EnvelopeError) as ei:
        verify_receipt(bytes(data), RECEIPT_KEYS, expected_device_id="dev-0001")
    assert ei.value.reason in {"malformed", "bad-signature"}


def test_receipt_round_trip_and_addressing() -> None:
    r = verify_receipt(RECEIPT, RECEIPT_KEYS, expected_device_id="dev-0001", expected_tenant="acme")
    assert r.status == "accepted"
    assert r.reason == "match"
    assert r.message_id == SEALED[0].header.message_id
    assert (r.score, r.threshold) == (0.7, 0.4)
    with pytest.raises(EnvelopeError) as ei:
        verify_receipt(RECEIPT, RECEIPT_KEYS, expected_device_id="dev-0002")
    assert ei.value.reason == "wrong-device"
    with pytest.raises(EnvelopeError) as ei:
        verify_receipt(RECEIPT, RECEIPT_KEYS, expected_device_id="dev-0001", expected_tenant="zzz")
    assert ei.value.reason == "wrong-device"
    with pytest.raises(EnvelopeError) as ei:
        verify_receipt(RECEIPT, {crypto.key_id(KEYS.receipt.public_key()): OTHER.receipt.public_key()},
                       expected_device_id="dev-0001")
    assert ei.value.reason == "bad-signature"
    with pytest.raises(EnvelopeError) as ei:
        verify_receipt(RECEIPT, {}, expected_device_id="dev-0001")
    assert ei.value.reason == "bad-signature"


@pytest.mark.parametrize(("reason", "status"), [
    ("accepted", "accepted"), ("no-reference", "accepted"), ("model-mismatch", "accepted"),
    ("replayed", "rejected"), ("unknown-device", "rejected"), ("stale", "rejected"),
])
def test_receipt_status_follows_reason(reason: str, status: str) -> None:
    data = sign_receipt(KEYS.receipt, message_id=uuid.UUID(int=0), tenant="acme", device_id="d",
                        reason=reason)
    assert verify_receipt(data, RECEIPT_KEYS, expected_device_id="d").status == status


def test_receipt_field_rules() -> None:
    mid = SEALED[0].header.message_id
    with pytest.raises(EnvelopeError):
        sign_receipt(KEYS.receipt, message_id=mid, tenant="acme", device_id="d", reason="match")  # no score
    with pytest.raises(EnvelopeError):
        sign_receipt(KEYS.receipt, message_id=mid, tenant="acme", device_id="d", reason="accepted", score=0.5)
    with pytest.raises(EnvelopeError):
        sign_receipt(KEYS.receipt, message_id=mid, tenant="acme", device_id="d", reason="great")
    with pytest.raises(EnvelopeError):
        sign_receipt(KEYS.receipt, message_id=mid, tenant="acme", device_id="d", reason="no-match",
                     score=float("nan"), threshold=0.3)
