"""JSON test vectors (tests/vectors/*.json), checked both ways: re-sealing the inputs with
the injected keys reproduces the bytes, and opening the bytes gives back the inputs."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kycedge import crypto
from kycedge.crypto import _vectors
from kycedge.protocol.envelope import (
    CarrierKey,
    EnvelopeError,
    Liveness,
    Payload,
    Template,
    open_envelope,
    peek_header,
    seal,
    sign_receipt,
    verify_receipt,
)
from kycedge.protocol.envelope.header import hpke_info
from pycose.keys import EC2Key, OKPKey
from pycose.keys.curves import P256, Ed25519
from pycose.messages import Sign1Message
from support.tools import load_tool

ROOT = Path(__file__).resolve().parents[3]
VECTORS = ROOT / "tests" / "vectors"
ENV = json.loads((VECTORS / "envelope-v1.json").read_text())
ENV2 = json.loads((VECTORS / "envelope-v2.json").read_text())
REC = json.loads((VECTORS / "receipt-v1.json").read_text())
# (document, case) for both envelope formats: version 1 (Ed25519 only) stays valid
VALID = [(ENV, c) for c in ENV["valid"]] + [(ENV2, c) for c in ENV2["valid"]]
INVALID = [(ENV, c) for c in ENV["invalid"]] + [(ENV2, c) for c in ENV2["invalid"]]


def _id(dc: tuple[dict[str, Any], dict[str, Any]]) -> str:
    return f"v{dc[0]['format_version']}-{dc[1]['name']}"


def _sk(name: str, doc: dict[str, Any] = ENV) -> Any:
    k = doc["keys"][name]
    raw = bytes.fromhex(k["private_hex"])
    key = {"ed25519": crypto.signing_key_from_bytes, "p256": crypto.ec_signing_key_from_bytes,
           "x25519": crypto.kem_private_key_from_bytes}[k["type"]](raw)
    assert crypto.public_key_bytes(key.public_key()).hex() == k["public_hex"]
    assert crypto.key_id(key.public_key()) == k["key_id"]
    return key


def _payload(p: dict[str, Any]) -> Payload:
    t = p["template"]
    template = Template(model_id=t["model_id"], model_version=t["model_version"], dtype=t["dtype"],
                        vector=bytes.fromhex(t["vector_hex"]))
    assert template.dim == t["dim"]
    return Payload(template=template, captured_at_ms=p["captured_at_ms"], liveness=Liveness(**p["liveness"]),
                   reference=p["reference"], prev_digest=bytes.fromhex(p["prev_digest_hex"]),
                   quality=p["quality"])


@dataclasses.dataclass(frozen=True)
class _FixedEphemeral(CarrierKey):
    ephemeral: crypto.KemPrivateKey | None = dataclasses.field(default=None, repr=False)

    def encrypt(self, plaintext: bytes, info: bytes) -> bytes:
        assert self.ephemeral is not None
        return _vectors.hpke_seal(self.public_key, plaintext, info=info, ephemeral_key=self.ephemeral)


CARRIER_KEYS = {ENV["keys"][n]["key_id"]: _sk(n) for n in ("carrier", "carrier_old")}


class _Claimed:
    """The vectors' ``device_es256_tpm``: a software key whose header claims ``tpm``."""

    def __init__(self, key: crypto.EcSigningKey) -> None:
        self.key, self.algorithm, self.protection = key, "es256", "tpm"

    def public_key(self) -> crypto.AnyVerifyKey:
        return self.key.public_key()

    def sign(self, data: bytes) -> bytes:
        return crypto.sign_es256(self.key, data)


def _signer(doc: dict[str, Any], name: str) -> Any:
    return _Claimed(_sk("device_es256", doc)) if name == "device_es256_tpm" else _sk(name, doc)


def _device_public(doc: dict[str, Any], name: str) -> crypto.AnyVerifyKey:
    return _signer(doc, name).public_key()  # type: ignore[no-any-return]


@pytest.mark.parametrize("dc", VALID, ids=_id)
def test_resealing_inputs_reproduces_vector(dc: tuple[dict[str, Any], dict[str, Any]]) -> None:
    doc, case = dc
    i = case["inputs"]
    sealed = seal(_payload(i["payload"]), tenant=i["tenant"], device_id=i["device_id"],
                  sequence=i["sequence"], format_version=doc["format_version"],
                  signing_key=_signer(doc, i["device_key"]),
                  carrier_key=_FixedEphemeral(
                      key_id=crypto.key_id(_sk(i["carrier_key"]).public_key()),
                      public_key=_sk(i["carrier_key"]).public_key(),
                      ephemeral=crypto.kem_private_key_from_bytes(bytes.fromhex(i["ephemeral_private_hex"]))),
                  message_id=uuid.UUID(i["message_id"]))
    assert sealed.data.hex() == case["envelope_hex"]
    assert sealed.digest.hex() == case["digest_hex"]
    header = bytes.fromhex(case["header_hex"])
    assert sealed.data.startswith(header)
    assert hpke_info(header).hex() == case["hpke_info_hex"]


@pytest.mark.parametrize("dc", VALID, ids=_id)
def test_opening_vector_gives_inputs(dc: tuple[dict[str, Any], dict[str, Any]]) -> None:
    doc, case = dc
    i = case["inputs"]
    data = bytes.fromhex(case["envelope_hex"])
    header = peek_header(data)
    assert (header.tenant, header.device_id, header.sequence, str(header.message_id)) == (
        i["tenant"], i["device_id"], i["sequence"], i["message_id"])
    assert header.carrier_key_id == ENV["keys"][i["carrier_key"]]["key_id"]
    if doc["format_version"] > 1:
        assert (header.signature_alg, header.key_protection) == (i["signature_alg"], i["key_protection"])
    else:
        assert (header.signature_alg, header.key_protection) == ("ed25519", "software")
    opened = open_envelope(data, device_public_key=_device_public(doc, i["device_key"]),
                           carrier_private_keys=CARRIER_KEYS)
    assert opened.header == header
    assert opened.payload == _payload(i["payload"])
    assert opened.signed.hex() == case["cose_sign1_hex"]
    assert hashlib.sha256(opened.signed).hexdigest() == case["digest_hex"]
    # the COSE payload is exactly the documented CBOR map
    item = cbor2.loads(opened.signed)
    assert item.value[2].hex() == case["payload_cbor_hex"]


def test_chain_link_between_vectors() -> None:
    first, second = ENV["valid"][0], ENV["valid"][1]
    assert second["inputs"]["payload"]["prev_digest_hex"] == first["digest_hex"]
    assert first["inputs"]["payload"]["prev_digest_hex"] == "00" * 32


@pytest.mark.parametrize("dc", VALID, ids=_id)
def test_vector_signed_part_verifies_with_pycose(dc: tuple[dict[str, Any], dict[str, Any]]) -> None:
    doc, case = dc
    item = cbor2.loads(bytes.fromhex(case["cose_sign1_hex"]))
    protected, unprotected, payload, signature = item.value
    msg = Sign1Message.from_cose_obj([protected, dict(unprotected), payload, signature], True)
    name = case["inputs"]["device_key"]
    if name == "device":
        msg.key = OKPKey(crv=Ed25519, x=bytes.fromhex(doc["keys"]["device"]["public_hex"]))
        assert cbor2.loads(protected)[1] == -8
    else:
        point = bytes.fromhex(doc["keys"]["device_es256"]["public_hex"])
        msg.key = EC2Key(crv=P256, x=point[1:33], y=point[33:])
        assert cbor2.loads(protected)[1] == -7
    assert msg.verify_signature()


def test_pycose_es256_signature_verifies_with_kycedge() -> None:
    """The other direction: a COSE_Sign1 that pycose signs with ES256 verifies with our code."""
    from kycedge.protocol.envelope.cose import CT_TEMPLATE, parse_sign1, verify_sign1
    from pycose.algorithms import Es256
    from pycose.headers import KID, Algorithm, ContentType

    sk = _sk("device_es256", ENV2)
    d = crypto.private_key_bytes(sk)
    point = crypto.public_key_bytes(sk.public_key())
    kid = bytes.fromhex(ENV2["keys"]["device_es256"]["key_id"])
    msg = Sign1Message(phdr={Algorithm: Es256, ContentType: CT_TEMPLATE, KID: kid}, payload=b"\xa0")
    msg.key = EC2Key(crv=P256, d=d, x=point[1:33], y=point[33:])
    encoded = msg.encode(tag=True)
    part = parse_sign1(encoded, what="pycose", content_type=CT_TEMPLATE)
    verify_sign1(part, sk.public_key())


@pytest.mark.parametrize("dc", INVALID, ids=_id)
def test_invalid_vectors_rejected_with_reason(dc: tuple[dict[str, Any], dict[str, Any]]) -> None:
    doc, case = dc
    with pytest.raises(EnvelopeError) as ei:
        open_envelope(bytes.fromhex(case["envelope_hex"]),
                      device_public_key=_device_public(doc, case.get("device_key", "device")),
                      carrier_private_keys=CARRIER_KEYS)
    assert ei.value.reason == case["reason"]


@pytest.mark.parametrize("case", REC["valid"], ids=lambda c: c["name"])
def test_receipt_vectors_both_ways(case: dict[str, Any]) -> None:
    key = _sk("receipt", REC)
    args = dict(case["inputs"])
    args["message_id"] = uuid.UUID(args["message_id"])
    assert sign_receipt(key, **args).hex() == case["receipt_hex"]
    keys = {crypto.key_id(key.public_key()): key.public_key()}
    r = verify_receipt(bytes.fromhex(case["receipt_hex"]), keys,
                       expected_device_id=case["inputs"]["device_id"])
    assert r.status == case["status"]
    assert r.reason == case["inputs"]["reason"]
    assert str(r.message_id) == case["inputs"]["message_id"]
    assert (r.score, r.threshold) == (case["inputs"]["score"], case["inputs"]["threshold"])


@pytest.mark.parametrize("case", REC["invalid"], ids=lambda c: c["name"])
def test_invalid_receipt_vectors(case: dict[str, Any]) -> None:
    key = _sk("receipt", REC)
    keys = {crypto.key_id(key.public_key()): key.public_key()}
    with pytest.raises(EnvelopeError) as ei:
        verify_receipt(bytes.fromhex(case["receipt_hex"]), keys,
                       expected_device_id=case["expected_device_id"])
    assert ei.value.reason == case["reason"]


def test_committed_vectors_match_generator() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "make_vectors.py"), "--check"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_template_vectors_do_not_depend_on_a_float_reduction(monkeypatch: pytest.MonkeyPatch) -> None:
    """The committed templates come out of the generator even when the platform's float32
    reductions round differently (issue 10: AVX-512 gave another last bit of
    ``np.linalg.norm``); here every reduction is nudged by one ulp."""
    import numpy as np

    gen = GEN
    real_norm, real_sum, real_dot = np.linalg.norm, np.sum, np.dot

    def nudge(x: Any) -> Any:
        return np.nextafter(x, np.inf) if np.ndim(x) == 0 else x

    monkeypatch.setattr(np.linalg, "norm", lambda *a, **k: nudge(real_norm(*a, **k)))
    monkeypatch.setattr(np, "sum", lambda *a, **k: nudge(real_sum(*a, **k)))
    monkeypatch.setattr(np, "dot", lambda *a, **k: nudge(real_dot(*a, **k)))
    for case in ENV["valid"]:
        t = case["inputs"]["payload"]["template"]
        assert gen.vector(t["dim"], case["name"]).tobytes().hex() == t["vector_hex"], case["name"]


GEN = load_tool("make_vectors.py")


@given(st.floats(min_value=0.0, max_value=2.0**100, allow_nan=False, width=32),
       st.fractions(min_value=0, max_value=10**6))
def test_sqrt_f32_is_correctly_rounded(x: float, s: Any) -> None:
    from fractions import Fraction

    import numpy as np

    assert GEN.sqrt_f32(Fraction(x) ** 2) == np.float32(x)  # exact squares come back exactly
    r = GEN.sqrt_f32(Fraction(s))
    hi, lo = np.nextafter(r, np.float32(np.inf)), np.nextafter(r, np.float32(0))
    assert ((Fraction(float(lo)) + Fraction(float(r))) / 2) ** 2 <= s or r == 0
    assert s <= ((Fraction(float(r)) + Fraction(float(hi))) / 2) ** 2
