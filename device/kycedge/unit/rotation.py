"""Key rotation on the unit: a new key beside the old, a hand-over the old key signs, then
the switch once the carrier has enrolled the new key (docs/tpm.md).

    handover = prepare(state_dir, tenant, device, tpm_tcti=...)   # -> kycedge-carrier device rotate
    identity = commit(state_dir, tpm_tcti=...)                     # after the carrier accepted

A TPM unit's next key is generated in the same TPM and certified by the same AK the carrier
recorded at enrolment, so the carrier can check it is TPM-held without a new challenge. The
old key keeps signing until :func:`commit`; its files stay as ``*.retired-<key id>``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Final

from kycedge import crypto
from kycedge.core.errors import KeyStoreError
from kycedge.core.fsutil import fsync_dir
from kycedge.protocol import attestation as msg
from kycedge.protocol.envelope.cose import sign1
from kycedge.unit.identity import (
    SIGNING_KEY_FILE,
    SIGNING_PUBLIC_FILE,
    TPM_KEY_FILE,
    TPM_PUBLIC_FILE,
    DeviceIdentity,
    load_identity,
)

__all__ = ["NEXT_SOFTWARE_KEY_FILE", "NEXT_TPM_KEY_FILE", "commit", "prepare"]

NEXT_TPM_KEY_FILE: Final = "device-tpm.next.key"
NEXT_SOFTWARE_KEY_FILE: Final = "device-ed25519.next.pem"


def prepare(state_dir: Path, tenant: str, device_id: str, *, tpm_tcti: str = "",
            now_ms: int | None = None) -> bytes:
    """Make the next key (TPM or software, like the current one) and the signed hand-over."""
    directory = Path(state_dir)
    old = load_identity(directory, tpm_tcti=tpm_tcti)
    try:
        issued = int(time.time() * 1000) if now_ms is None else now_ms
        if old.key_protection == "tpm":
            from kycedge.crypto import attest
            from kycedge.crypto.tpm import create_key

            blob = create_key(tpm_tcti)
            crypto.write_key_file(directory / NEXT_TPM_KEY_FILE, blob, 0o600)
            info, sig = attest.certify_blob(tpm_tcti, blob, msg.qualifying_data(tenant, device_id, "rotate"))
            m = msg.HandoverMessage(tenant, device_id, old.key_id, attest.key_area(blob), "es256", "tpm",
                                    info, sig, issued)
        else:
            key = crypto.generate_signing_key()
            crypto.save_private_key(directory / NEXT_SOFTWARE_KEY_FILE, key)
            m = msg.HandoverMessage(tenant, device_id, old.key_id, crypto.public_key_bytes(key.public_key()),
                                    "ed25519", "software", b"", b"", issued)
        return sign1(old.signer, msg.encode_handover(m), msg.CT_HANDOVER, key_id=old.key_id)
    finally:
        old.close()


def commit(state_dir: Path, *, tpm_tcti: str = "") -> DeviceIdentity:
    """Switch to the prepared key: the current key files become ``*.retired-<key id>``."""
    directory = Path(state_dir)
    old = load_identity(directory, tpm_tcti=tpm_tcti)
    old.close()
    if old.key_protection == "tpm":
        nxt, cur, pub = NEXT_TPM_KEY_FILE, TPM_KEY_FILE, TPM_PUBLIC_FILE
    else:
        nxt, cur, pub = NEXT_SOFTWARE_KEY_FILE, SIGNING_KEY_FILE, SIGNING_PUBLIC_FILE
    if not (directory / nxt).exists():
        raise KeyStoreError(f"{directory / nxt}: no prepared key (kycedge keys rotate first)",
                            reason="missing-key")
    for name in (cur, pub):
        if (directory / name).exists():
            os.replace(directory / name, directory / f"{name}.retired-{old.key_id}")
    os.replace(directory / nxt, directory / cur)
    new = load_identity(directory, tpm_tcti=tpm_tcti)
    crypto.save_public_key(directory / pub, new.signer.public_key())
    fsync_dir(directory)
    return new
