"""Hypothesis properties of the attestation and hand-over messages (protocol/attestation) and
the version-2 header: round trips, and untrusted bytes give EnvelopeError, never a crash."""

from __future__ import annotations

import contextlib
import dataclasses
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kycedge.core.errors import EnvelopeError
from kycedge.protocol import attestation as msg
from kycedge.protocol.envelope.header import encode_header, peek_header
from kycedge.protocol.envelope.model import Header
from kycedge.protocol.ids import new_message_id

EXAMPLES = int(os.environ.get("KYCEDGE_HYPOTHESIS_EXAMPLES", "150"))
blob = st.binary(min_size=1, max_size=300)


@settings(max_examples=EXAMPLES, deadline=None)
@given(ek=blob, ekp=blob, ak=blob, key=blob, info=blob, sig=blob)
def test_request_round_trip(ek: bytes, ekp: bytes, ak: bytes, key: bytes, info: bytes,
                            sig: bytes) -> None:
    m = msg.AttestationMessage("acme", "dev-0001", ek, ekp, ak, key, info, sig)
    assert msg.decode_request(msg.encode_request(m)) == m


VALID = [
    msg.encode_request(msg.AttestationMessage("acme", "dev-0001", b"e", b"p", b"a", b"k", b"i", b"s")),
    msg.encode_challenge(msg.ChallengeMessage(b"b", b"s")),
    msg.encode_handover(msg.HandoverMessage("acme", "dev-1", "ab" * 16, b"k", "ed25519", "software", b"", b"",
                                            1_764_000_000_000)),
    msg.encode_record(msg.AttestationRecord("00" * 32, "CN=x", b"a")),
]


def _flip(t: tuple[bytes, int, int]) -> bytes:
    data, at, mask = t
    i = at % len(data)
    return data[:i] + bytes([data[i] ^ mask]) + data[i + 1:]


@settings(max_examples=EXAMPLES, deadline=None)
@given(data=st.one_of(
    st.binary(max_size=400),
    st.tuples(st.sampled_from(VALID), st.integers(0, 10_000), st.integers(1, 255)).map(_flip),
))
def test_untrusted_bytes_never_crash_the_decoders(data: bytes) -> None:
    for decode in (msg.decode_request, msg.decode_challenge, msg.decode_handover, msg.decode_record):
        with contextlib.suppress(EnvelopeError):
            decode(data)


@settings(max_examples=EXAMPLES, deadline=None)
@given(kp=st.sampled_from(["software", "tpm"]), pub=blob,
       issued=st.integers(1_577_836_800_000, 4_102_444_799_999))
def test_handover_round_trip(kp: str, pub: bytes, issued: int) -> None:
    cert = (b"\x01" * 10, b"\x02" * 64) if kp == "tpm" else (b"", b"")
    m = msg.HandoverMessage("acme", "dev-1", "ab" * 16, pub, "es256", kp, cert[0], cert[1], issued)
    assert msg.decode_handover(msg.encode_handover(m)) == m


def test_handover_rules() -> None:
    with pytest.raises(EnvelopeError):  # a tpm key without the AK's certification
        msg.HandoverMessage("acme", "dev-1", "ab" * 16, b"k", "es256", "tpm", b"", b"", 1_764_000_000_000)
    with pytest.raises(EnvelopeError):  # no Ed25519 in a TPM
        msg.HandoverMessage("acme", "dev-1", "ab" * 16, b"k", "ed25519", "tpm", b"i", b"s",
                            1_764_000_000_000)
    assert msg.qualifying_data("a", "b") != msg.qualifying_data("a", "b", "rotate")
    assert msg.qualifying_data("a", "bc") != msg.qualifying_data("ab", "c")


@settings(max_examples=EXAMPLES, deadline=None)
@given(version=st.sampled_from([1, 2]), alg=st.sampled_from(["ed25519", "es256"]),
       kp=st.sampled_from(["software", "tpm"]), seq=st.integers(0, 2**63 - 1))
def test_header_round_trip_both_versions(version: int, alg: str, kp: str, seq: int) -> None:
    kwargs = dict(tenant="acme", device_id="dev-1", device_key_id="ab" * 16, carrier_key_id="cd" * 16,
                  message_id=new_message_id(), sequence=seq, version=version, signature_alg=alg,
                  key_protection=kp)
    if version == 1 and (alg, kp) != ("ed25519", "software"):
        with pytest.raises(EnvelopeError):
            Header(**kwargs)  # type: ignore[arg-type]
        return
    h = Header(**kwargs)  # type: ignore[arg-type]
    data = encode_header(h) + bytes(48)
    assert peek_header(data) == h
    v1 = dataclasses.replace(h, version=1, signature_alg="ed25519", key_protection="software")
    assert len(encode_header(h)) == len(encode_header(v1)) + (2 if version == 2 else 0)
