#!/usr/bin/env python3
"""Generate the wire-format test vectors in tests/vectors/ (deterministic).

Keys are derived from fixed labels (SHA-256 of the label = the raw private key), the
HPKE ephemeral key, message ids and times are injected, so every run writes the same
bytes. ``--check`` regenerates in memory and fails if the files on disk differ.

    .venv/bin/python tools/make_vectors.py            # write
    .venv/bin/python tools/make_vectors.py --check    # verify the committed files
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from kycedge import crypto
from kycedge.crypto import _vectors
from kycedge.protocol.envelope import (
    GENESIS_DIGEST,
    CarrierKey,
    EnvelopeError,
    Liveness,
    Payload,
    Template,
    new_message_id,
    open_envelope,
    peek_header,
    seal,
    sign_receipt,
    verify_receipt,
)
from kycedge.protocol.envelope.cose import CT_TEMPLATE, sign1
from kycedge.protocol.envelope.header import encode_header, hpke_info
from kycedge.protocol.envelope.seal import encode_payload


@dataclasses.dataclass(frozen=True)
class FixedEphemeralCarrierKey(CarrierKey):
    """A carrier key that seals with a given HPKE ephemeral key (vectors only)."""

    ephemeral: crypto.KemPrivateKey | None = dataclasses.field(default=None, repr=False)

    def encrypt(self, plaintext: bytes, info: bytes) -> bytes:
        assert self.ephemeral is not None
        return _vectors.hpke_seal(self.public_key, plaintext, info=info, ephemeral_key=self.ephemeral)


OUT = Path(__file__).resolve().parent.parent / "tests" / "vectors"


def seed(label: str) -> bytes:
    return hashlib.sha256(f"kycedge test vector: {label}".encode()).digest()


DEVICE = crypto.signing_key_from_bytes(seed("device ed25519"))
ATTACKER = crypto.signing_key_from_bytes(seed("attacker ed25519"))
CARRIER = crypto.kem_private_key_from_bytes(seed("carrier x25519 2026"))
CARRIER_OLD = crypto.kem_private_key_from_bytes(seed("carrier x25519 2025"))
RECEIPT = crypto.signing_key_from_bytes(seed("carrier receipt ed25519"))
DEVICE_ES256 = crypto.ec_signing_key_from_bytes(seed("device es256"))


@dataclasses.dataclass(frozen=True)
class ClaimedSigner:
    """A software key that claims a protection (a wire vector cannot hold a TPM; the carrier
    learns the real protection from the enrolment attestation, never from the header)."""

    key: crypto.EcSigningKey
    claimed: crypto.KeyProtection

    @property
    def algorithm(self) -> crypto.SignatureAlgorithm:
        return "es256"

    @property
    def protection(self) -> crypto.KeyProtection:
        return self.claimed

    def public_key(self) -> crypto.AnyVerifyKey:
        return self.key.public_key()

    def sign(self, data: bytes) -> bytes:
        return crypto.sign_es256(self.key, data)


SIGNERS: dict[str, Any] = {
    "device": DEVICE,
    "device_es256": DEVICE_ES256,
    "device_es256_tpm": ClaimedSigner(DEVICE_ES256, "tpm"),
}


def sqrt_f32(s: Fraction) -> np.float32:
    """The float32 nearest to sqrt(s), s >= 0 exact (ties to even): no float reduction."""
    if s < 0:
        raise ValueError(f"expected s >= 0, got {s}")
    r = np.float32(math.sqrt(float(s)))  # within an ulp or two; fixed below in exact arithmetic
    up, down = np.float32(np.inf), np.float32(0.0)

    def mid(a: np.float32, b: np.float32) -> Fraction:
        return (Fraction(float(a)) + Fraction(float(b))) / 2

    while True:
        hi = np.nextafter(r, up)
        lo = np.nextafter(r, down)
        if (r != hi and s > mid(r, hi) ** 2) or (s == mid(r, hi) ** 2 and int(r.view(np.uint32)) & 1):
            r = hi
        elif (r != 0 and s < mid(lo, r) ** 2) or (s == mid(lo, r) ** 2 and int(r.view(np.uint32)) & 1):
            r = lo
        else:
            return r


def vector(dim: int, label: str) -> np.ndarray:
    """A unit float32 template, bit-identical on every CPU and numpy build.

    The draws are elementwise (no reduction); the norm is the exact sum of squares
    (``Fraction``) with a correctly rounded float32 square root, and each component is
    ``float32(x / n)`` through float64, which is the correctly rounded float32 quotient
    (53 >= 2*24 + 2 bits: double rounding is innocuous for division). ``np.linalg.norm``
    over float32 is not used: its summation order (SIMD width) changes its last bit.
    """
    rng = np.random.default_rng(int.from_bytes(seed(label)[:8], "big"))
    v = rng.standard_normal(dim).astype(np.float32)
    n = float(sqrt_f32(sum((Fraction(float(x)) ** 2 for x in v), Fraction(0))))
    return np.array([np.float32(float(x) / n) for x in v], dtype=np.float32)


def keys_json(es256: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if es256:
        out["device_es256"] = {"type": "p256", "private_hex": crypto.private_key_bytes(DEVICE_ES256).hex(),
                               "public_hex": crypto.public_key_bytes(DEVICE_ES256.public_key()).hex(),
                               "key_id": crypto.key_id(DEVICE_ES256.public_key())}
    for name, sk in [("device", DEVICE), ("attacker", ATTACKER), ("receipt", RECEIPT)]:
        out[name] = {"type": "ed25519", "private_hex": crypto.private_key_bytes(sk).hex(),
                     "public_hex": crypto.public_key_bytes(sk.public_key()).hex(),
                     "key_id": crypto.key_id(sk.public_key())}
    for name, k in [("carrier", CARRIER), ("carrier_old", CARRIER_OLD)]:
        out[name] = {"type": "x25519", "private_hex": crypto.private_key_bytes(k).hex(),
                     "public_hex": crypto.public_key_bytes(k.public_key()).hex(),
                     "key_id": crypto.key_id(k.public_key())}
    return out


def payload_json(p: Payload) -> dict[str, Any]:
    return {
        "template": {"model_id": p.template.model_id, "model_version": p.template.model_version,
                     "dtype": p.template.dtype, "dim": p.template.dim, "vector_hex": p.template.vector.hex()},
        "captured_at_ms": p.captured_at_ms,
        "quality": dict(p.quality),
        "liveness": {"passed": p.liveness.passed, "method": p.liveness.method, "score": p.liveness.score},
        "reference": p.reference,
        "prev_digest_hex": p.prev_digest.hex(),
    }


V1_SPECS: list[dict[str, Any]] = [
        dict(name="first-envelope", tenant="acme-telecom", device_id="dev-0001", sequence=0,
             mid_ms=1_764_158_400_000, dim=128, quality={"blur": 0.125, "face_px": 212.0, "yaw_deg": -3.5},
             liveness=(True, "blink", 0.9375), reference="rQm7Xk2Lw9Pz4Vt8Nc1Bd0", carrier=CARRIER),
        dict(name="chained-second", tenant="acme-telecom", device_id="dev-0001", sequence=1,
             mid_ms=1_764_158_460_000, dim=128, quality={"blur": 0.25}, liveness=(False, "blink", 0.125),
             reference="rHs3Ya9Wq0Er5Ty6Ui7Op8", carrier=CARRIER),
        dict(name="limits", tenant="t" * 32, device_id="D" * 64, sequence=2**63 - 1,
             mid_ms=1_764_158_520_000, dim=16, quality={}, liveness=(True, "passive-depth", 1.0),
             reference="R" + "x" * 63, carrier=CARRIER),
        dict(name="rotated-old-carrier-key", tenant="acme-telecom", device_id="dev-0002", sequence=5,
             mid_ms=1_764_158_580_000, dim=512, quality={"blur": 0.5}, liveness=(True, "blink", 0.75),
             reference="rAb-Cd_Ef-Gh_Ij-Kl_Mn", carrier=CARRIER_OLD),
]
V2_SPECS: list[dict[str, Any]] = [
    dict(V1_SPECS[0], name="ed25519-software", device_key="device"),
    dict(V1_SPECS[0], name="es256-software", device_key="device_es256", device_id="dev-0003"),
    dict(V1_SPECS[1], name="es256-tpm-chained-second", device_key="device_es256_tpm", device_id="dev-0004"),
]


def envelope_cases(version: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    carrier_key = CarrierKey.from_public_key(CARRIER.public_key())
    specs = V1_SPECS if version == 1 else V2_SPECS
    cases = []
    prev = GENESIS_DIGEST
    for i, s in enumerate(specs):
        payload = Payload(
            template=Template.from_array(vector(s["dim"], s["name"]), model_id="sface-2021dec-int8",
                                         model_version="1.0.0"),
            captured_at_ms=s["mid_ms"] - 1500, liveness=Liveness(*s["liveness"]), reference=s["reference"],
            prev_digest=prev if "chained-second" in s["name"] else GENESIS_DIGEST, quality=s["quality"])
        mid = new_message_id(now_ms=s["mid_ms"], random_bytes=seed(f"mid {i}")[:10])
        eph = crypto.kem_private_key_from_bytes(seed(f"ephemeral {s['name']}"))
        ck = FixedEphemeralCarrierKey(key_id=crypto.key_id(s["carrier"].public_key()),
                                      public_key=s["carrier"].public_key(), ephemeral=eph)
        device_key = s.get("device_key", "device")
        signer = SIGNERS[device_key]
        sealed = seal(payload, tenant=s["tenant"], device_id=s["device_id"], sequence=s["sequence"],
                      signing_key=signer, carrier_key=ck, message_id=mid, format_version=version)
        hb = encode_header(sealed.header)
        opened = open_envelope(sealed.data, device_public_key=signer.public_key(),
                               carrier_private_keys={crypto.key_id(s["carrier"].public_key()): s["carrier"]})
        assert opened.payload == payload
        if i == 0:
            prev = sealed.digest
        cases.append({
            "name": s["name"],
            "inputs": {"tenant": s["tenant"], "device_id": s["device_id"], "sequence": s["sequence"],
                       "message_id": str(mid), "device_key": device_key,
                       **({"signature_alg": sealed.header.signature_alg,
                           "key_protection": sealed.header.key_protection} if version > 1 else {}),
                       "carrier_key": "carrier" if s["carrier"] is CARRIER else "carrier_old",
                       "ephemeral_private_hex": crypto.private_key_bytes(eph).hex(),
                       "payload": payload_json(payload)},
            "header_hex": hb.hex(),
            "hpke_info_hex": hpke_info(hb).hex(),
            "payload_cbor_hex": encode_payload(sealed.header, payload).hex(),
            "cose_sign1_hex": opened.signed.hex(),
            "digest_hex": sealed.digest.hex(),
            "envelope_hex": sealed.data.hex(),
            "envelope_bytes": len(sealed.data),
        })
    first = bytes.fromhex(cases[0]["envelope_hex"])
    hlen = len(bytes.fromhex(cases[0]["header_hex"]))
    first_header = peek_header(first)
    signed = bytes.fromhex(cases[0]["cose_sign1_hex"])

    def flip(data: bytes, byte: int, bit: int = 0) -> bytes:
        b = bytearray(data)
        b[byte] ^= 1 << bit
        return bytes(b)

    def reseal(header: Any, inner: bytes, label: str) -> bytes:
        hb = encode_header(header)
        eph = crypto.kem_private_key_from_bytes(seed(label))
        return hb + _vectors.hpke_seal(carrier_key.public_key, inner, info=hpke_info(hb), ephemeral_key=eph)

    attacker_signed = sign1(ATTACKER, encode_payload(first_header, _payload_of(cases[0])), CT_TEMPLATE)
    if version > 1:
        return cases, _v2_invalid(cases, reseal)
    invalid = [
        ("ciphertext-bit-flip", flip(first, len(first) - 20), "undecryptable"),
        ("hpke-enc-bit-flip", flip(first, hlen + 3), "undecryptable"),
        ("tag-bit-flip", flip(first, len(first) - 1, 7), "undecryptable"),
        ("header-sequence-bit-flip", flip(first, 29), "undecryptable"),
        ("header-device-id-changed", first.replace(b"dev-0001", b"dev-0009", 1), "undecryptable"),
        ("unknown-carrier-key-id", flip(first, 46), "undecryptable"),
        ("trailing-byte", first + b"\x00", "undecryptable"),
        ("truncated-in-header", first[:40], "malformed"),
        ("truncated-after-header", first[: hlen + 47], "malformed"),
        ("bad-magic", b"KYCF" + first[4:], "malformed"),
        ("format-version-3", first[:4] + b"\x03" + first[5:], "unsupported-version"),
        ("suite-2", first[:5] + b"\x02" + first[6:], "unsupported-version"),
        ("sequence-above-2^63-1", first[:22] + b"\x80" + first[23:], "malformed"),
        ("message-id-not-v7", first[:12] + bytes([first[12] & 0x0F | 0x40]) + first[13:], "malformed"),
        ("header-swap", bytes.fromhex(cases[0]["header_hex"]) + bytes.fromhex(cases[1]["envelope_hex"])[
            len(bytes.fromhex(cases[1]["header_hex"])):], "undecryptable"),
        ("signed-by-attacker-key", reseal(first_header, attacker_signed, "eph attacker"), "bad-signature"),
        ("signed-payload-under-other-sequence",
         reseal(dataclasses.replace(first_header, sequence=1), signed, "eph splice"), "bad-signature"),
        ("not-cose-inside", reseal(first_header, b"\xa0", "eph garbage"), "malformed"),
    ]
    out_invalid = []
    for name, data, reason in invalid:
        try:
            open_envelope(data, device_public_key=DEVICE.public_key(),
                          carrier_private_keys={carrier_key.key_id: CARRIER})
        except EnvelopeError as e:
            if e.reason != reason:
                raise SystemExit(f"invalid vector {name}: expected {reason}, got {e.reason}: {e}") from e
        else:
            raise SystemExit(f"invalid vector {name} opened")
        out_invalid.append({"name": name, "derived_from": "first-envelope", "envelope_hex": data.hex(),
                            "reason": reason})
    return cases, out_invalid


def _v2_invalid(cases: list[dict[str, Any]], reseal: Any) -> list[dict[str, Any]]:
    """Version-2 specific refusals: the algorithm and protection bytes."""
    es = cases[1]
    data = bytes.fromhex(es["envelope_hex"])
    header = peek_header(data)
    signed = bytes.fromhex(es["cose_sign1_hex"])
    inner_as_ed25519 = dataclasses.replace(header, signature_alg="ed25519")
    invalid = [
        ("es256-ciphertext-bit-flip", data[:-20] + bytes([data[-20] ^ 1]) + data[-19:], "undecryptable"),
        ("unknown-signature-alg-byte", data[:62] + b"\x05" + data[63:], "unsupported-version"),
        ("unknown-key-protection-byte", data[:63] + b"\x07" + data[64:], "malformed"),
        ("header-alg-differs-from-cose", reseal(inner_as_ed25519, signed, "eph alg"), "bad-signature"),
        ("header-protection-relabelled", reseal(dataclasses.replace(header, key_protection="tpm"), signed,
                                                "eph kp"), "bad-signature"),
        ("es256-signature-bit-flip", reseal(header, signed[:-1] + bytes([signed[-1] ^ 1]), "eph sig"),
         "bad-signature"),
    ]
    out = []
    pub = DEVICE_ES256.public_key()
    for name, blob, reason in invalid:
        try:
            open_envelope(blob, device_public_key=pub,
                          carrier_private_keys={crypto.key_id(CARRIER.public_key()): CARRIER})
        except EnvelopeError as e:
            if e.reason != reason:
                raise SystemExit(f"invalid v2 vector {name}: expected {reason}, got {e.reason}: {e}") from e
        else:
            raise SystemExit(f"invalid v2 vector {name} opened")
        out.append({"name": name, "derived_from": es["name"], "device_key": "device_es256",
                    "envelope_hex": blob.hex(), "reason": reason})
    return out


def _payload_of(case: dict[str, Any]) -> Payload:
    p = case["inputs"]["payload"]
    t = p["template"]
    return Payload(template=Template(model_id=t["model_id"], model_version=t["model_version"],
                                     vector=bytes.fromhex(t["vector_hex"]), dtype=t["dtype"]),
                   captured_at_ms=p["captured_at_ms"], liveness=Liveness(**p["liveness"]),
                   reference=p["reference"], prev_digest=bytes.fromhex(p["prev_digest_hex"]),
                   quality=p["quality"])


def receipt_cases() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    import uuid

    mid = new_message_id(now_ms=1_764_158_400_000, random_bytes=seed("mid 0")[:10])
    specs: list[dict[str, Any]] = [
        dict(name="match", message_id=str(mid), tenant="acme-telecom", device_id="dev-0001", reason="match",
             score=0.6875, threshold=0.363, model_id="sface-2021dec-int8", model_version="1.0.0",
             issued_at_ms=1_764_158_401_000),
        dict(name="rejected-replayed", message_id=str(mid), tenant="acme-telecom", device_id="dev-0001",
             reason="replayed", score=None, threshold=None, model_id=None, model_version=None,
             issued_at_ms=1_764_158_402_000),
        dict(name="malformed-nil-message-id", message_id=str(uuid.UUID(int=0)), tenant="acme-telecom",
             device_id="dev-0001", reason="malformed", score=None, threshold=None, model_id=None,
             model_version=None, issued_at_ms=1_764_158_403_000),
    ]
    keys = {crypto.key_id(RECEIPT.public_key()): RECEIPT.public_key()}
    cases = []
    for s in specs:
        args = {k: v for k, v in s.items() if k != "name"}
        args["message_id"] = uuid.UUID(args["message_id"])
        data = sign_receipt(RECEIPT, **args)
        r = verify_receipt(data, keys, expected_device_id=s["device_id"])
        cases.append({"name": s["name"], "inputs": {k: v for k, v in s.items() if k != "name"},
                      "status": r.status, "receipt_hex": data.hex()})
    first = bytes.fromhex(cases[0]["receipt_hex"])
    invalid = [
        ("signature-bit-flip", first[:-1] + bytes([first[-1] ^ 1]), "bad-signature", "dev-0001"),
        ("payload-byte-changed", first.replace(b"dev-0001", b"dev-0002", 1), "bad-signature", "dev-0001"),
        ("other-device", first, "wrong-device", "dev-0002"),
        ("truncated", first[:-10], "malformed", "dev-0001"),
    ]
    out_invalid = []
    for name, data, reason, expected_device in invalid:
        try:
            verify_receipt(data, keys, expected_device_id=expected_device)
        except EnvelopeError as e:
            if e.reason != reason:
                raise SystemExit(f"invalid receipt {name}: expected {reason}, got {e.reason}: {e}") from e
        else:
            raise SystemExit(f"invalid receipt {name} verified")
        out_invalid.append({"name": name, "receipt_hex": data.hex(), "expected_device_id": expected_device,
                            "reason": reason})
    return cases, out_invalid


def build() -> dict[str, str]:
    env, env_bad = envelope_cases(1)
    env2, env2_bad = envelope_cases(2)
    rec, rec_bad = receipt_cases()
    common = {"generator": "tools/make_vectors.py", "format_version": 1, "keys": keys_json()}
    return {
        "envelope-v1.json": json.dumps({
            **common,
            "description": "kycedge sealed template envelopes, format version 1 (docs/wire-format.md). "
                           "Re-sealing 'inputs' with the given keys and ephemeral key reproduces "
                           "envelope_hex exactly; every 'invalid' entry must be refused with 'reason'.",
            "valid": env, "invalid": env_bad}, indent=1) + "\n",
        "envelope-v2.json": json.dumps({
            **common, "format_version": 2, "keys": keys_json(es256=True),
            "description": "kycedge sealed template envelopes, format version 2 (docs/wire-format.md): the "
                           "header names the signature algorithm (COSE -8 EdDSA, -7 ES256) and the key "
                           "protection (software, tpm). ES256 software signatures use RFC 6979 nonces, so "
                           "re-sealing 'inputs' reproduces envelope_hex; a TPM's ES256 signatures are "
                           "randomised (the tpm case here is a software key labelled tpm: the header is a "
                           "claim, the carrier trusts the enrolment attestation).",
            "valid": env2, "invalid": env2_bad}, indent=1) + "\n",
        "receipt-v1.json": json.dumps({
            **common,
            "description": "kycedge carrier receipts (COSE_Sign1, Ed25519 is deterministic: re-signing "
                           "'inputs' with keys.receipt reproduces receipt_hex).",
            "valid": rec, "invalid": rec_bad}, indent=1) + "\n",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the files on disk, write nothing")
    args = ap.parse_args()
    files = build()
    if args.check:
        bad = [n for n, text in files.items() if not (OUT / n).exists() or (OUT / n).read_text() != text]
        print("vectors: " + ("OK" if not bad else f"DIFFER: {', '.join(bad)}"))
        return 1 if bad else 0
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
