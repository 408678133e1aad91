"""The unit's half of TPM key attestation (docs/tpm.md): the request and the credential proof."""

from __future__ import annotations

from pathlib import Path

from kycedge import crypto
from kycedge.core.errors import KeyStoreError
from kycedge.protocol import attestation as msg
from kycedge.unit.identity import TPM_KEY_FILE

__all__ = ["activate", "request"]


def _blob(state_dir: Path, key_file: str = TPM_KEY_FILE) -> bytes:
    path = Path(state_dir) / key_file
    if not path.exists():
        raise KeyStoreError(f"{path}: no TPM-held device key to attest (kycedge keys init --tpm TCTI)",
                            reason="missing-key")
    return crypto.read_key_file(path, secret=True)


def request(
    state_dir: Path, tcti: str, tenant: str, device_id: str, *, key_file: str = TPM_KEY_FILE
) -> bytes:
    """CBOR attestation request: EK certificate, EK/AK public areas, the AK's certification of the key."""
    from kycedge.crypto import attest

    r = attest.make_request(tcti, _blob(state_dir, key_file), msg.qualifying_data(tenant, device_id))
    return msg.encode_request(msg.AttestationMessage(tenant, device_id, r.ek_certificate, r.ek_public,
                                                     r.ak_public, r.key_public, r.certify_info,
                                                     r.certify_signature))


def activate(tcti: str, challenge: bytes) -> bytes:
    """The credential secret the carrier encrypted to this TPM's EK for its AK."""
    from kycedge.crypto import attest

    ch = msg.decode_challenge(challenge)
    return attest.activate(tcti, attest.Challenge(ch.credential_blob, ch.encrypted_secret))
