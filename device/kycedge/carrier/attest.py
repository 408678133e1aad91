"""Enrolment of a TPM-held unit key: check the attestation, challenge the AK, record ``tpm``.

    challenge = make_challenge(config, request_bytes)                # -> the unit's TPM
    record = enroll_attested(registry, config, request_bytes, proof) # the unit's answer

The carrier keeps no state between the two steps: the credential secret is an HMAC of
the request under a key derived from the carrier's at-rest key, so the same request
always yields the same secret and only the TPM holding both the EK and the AK can
return it. What is recorded (CBOR in ``devices.attestation``): the EK certificate's
SHA-256 and issuer, and the AK's public area (it certifies the unit's next key at
rotation, :mod:`kycedge.carrier.handover`).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from kycedge import crypto
from kycedge.carrier.config import CarrierConfig
from kycedge.carrier.registry import DeviceRecord, Registry, RegistryError
from kycedge.core.errors import EnvelopeError, KeyStoreError
from kycedge.protocol import attestation as msg

__all__ = ["AttestedKey", "attestation_record", "enroll_attested", "make_challenge", "verify"]


@dataclass(frozen=True)
class AttestedKey:
    request: msg.AttestationMessage
    public_key: crypto.EcVerifyKey
    ak_public: bytes
    record: bytes  # CBOR for devices.attestation


def _trusted(config: CarrierConfig) -> list[Any]:
    if not config.tpm_ca_certificates:
        raise RegistryError("carrier.tpm_ca_certificates: expected the TPM manufacturer CA files to "
                            "check endorsement-key certificates against, got none", reason="bad-attestation")
    out = []
    for path in config.tpm_ca_certificates:
        out.extend(crypto.load_certificates(path))
    return out


def _request(data: bytes) -> msg.AttestationMessage:
    try:
        return msg.decode_request(data)
    except EnvelopeError as e:
        raise RegistryError(f"attestation request: {e.message}", reason="bad-attestation") from e


def attestation_record(ek_sha256: str, ek_issuer: str, ak_public: bytes) -> bytes:
    return msg.encode_record(msg.AttestationRecord(ek_sha256, ek_issuer, ak_public))


def verify(config: CarrierConfig, data: bytes) -> AttestedKey:
    """The EK certificate chain, the EK public area and the AK's certification of the key."""
    from kycedge.crypto import attest

    req = _request(data)
    try:
        checked = attest.verify_request(
            attest.AttestationRequest(req.ek_certificate, req.ek_public, req.ak_public, req.key_public,
                                      req.certify_info, req.certify_signature),
            _trusted(config), msg.qualifying_data(req.tenant, req.device_id))
    except KeyStoreError as e:
        raise RegistryError(e.message, reason="bad-attestation") from e
    record = attestation_record(checked.ek_certificate_sha256, checked.ek_issuer, checked.ak_public)
    return AttestedKey(req, checked.public_key, checked.ak_public, record)


def _secret(config: CarrierConfig, data: bytes) -> bytes:
    base = crypto.load_secret_key(config.at_rest_key_path)
    key = hmac.new(base, b"kycedge attestation credential key v1", hashlib.sha256).digest()
    return hmac.new(key, hashlib.sha256(data).digest(), hashlib.sha256).digest()


def make_challenge(config: CarrierConfig, data: bytes) -> bytes:
    """Verify the request, then encrypt the credential secret to its EK, bound to its AK."""
    from kycedge.crypto import attest

    checked = verify(config, data)
    r = checked.request
    ch = attest.make_challenge(
        attest.AttestationRequest(r.ek_certificate, r.ek_public, r.ak_public, r.key_public, r.certify_info,
                                  r.certify_signature), _secret(config, data))
    return msg.encode_challenge(msg.ChallengeMessage(ch.credential_blob, ch.encrypted_secret))


def enroll_attested(registry: Registry, config: CarrierConfig, data: bytes, proof: bytes, *,
                    tenant: str, device_id: str) -> DeviceRecord:
    """Verify again, check the unit's credential proof, enrol the key as ``tpm``.

    ``tenant``/``device_id`` are what the operator means to enrol; the attestation (whose
    certification covers them) must name the same unit.
    """
    from kycedge.crypto import attest

    checked = verify(config, data)
    if (checked.request.tenant, checked.request.device_id) != (tenant, device_id):
        raise RegistryError(
            f"attestation names {checked.request.tenant}/{checked.request.device_id}, expected "
            f"{tenant}/{device_id}", reason="bad-attestation")
    try:
        attest.check_proof(proof, _secret(config, data))
    except KeyStoreError as e:
        raise RegistryError(e.message, reason="bad-attestation") from e
    r = checked.request
    return registry.enroll(r.tenant, r.device_id, crypto.public_key_bytes(checked.public_key),
                           signature_alg="es256", key_protection="tpm", attestation=checked.record)
