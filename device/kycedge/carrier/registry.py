"""Device registry: which unit (tenant, device id) may send, under which key.

One row per enrolled key: ``(tenant, device_id, key_id)`` with the raw public key (32
bytes Ed25519, or the 65-byte P-256 point for ES256), its signature algorithm, its key
protection (``software``: a key file on the unit; ``tpm``: recorded only after the TPM's
attestation of the key verified at enrolment) and a status, ``active`` or ``revoked``. A unit whose key is
replaced is enrolled again under the new key id (its sequence numbers restart under that key id) and the
old key is revoked. Revocation takes effect on the very next envelope in every receiver
process: lookups are not cached.
"""

from __future__ import annotations

from dataclasses import dataclass

from kycedge import crypto
from kycedge.carrier.store import DeviceRecord, SqlStore, now_ms
from kycedge.core.errors import CarrierError, IdError
from kycedge.protocol import ids

__all__ = ["DeviceRecord", "Registry", "RegistryError", "check_device_id", "check_tenant"]


class RegistryError(CarrierError):
    reason = "registry-error"


def check_tenant(value: str) -> str:
    """A tenant as :mod:`kycedge.protocol.ids` allows it, as a :class:`RegistryError`."""
    try:
        return ids.check_tenant(value)
    except IdError as e:
        raise RegistryError(e.message, reason="bad-id") from e


def check_device_id(value: str) -> str:
    """A device id as :mod:`kycedge.protocol.ids` allows it, as a :class:`RegistryError`."""
    try:
        return ids.check_device_id(value)
    except IdError as e:
        raise RegistryError(e.message, reason="bad-id") from e


@dataclass(frozen=True)
class Registry:
    store: SqlStore

    hardware_key_tenants: frozenset[str] = frozenset()  # tenant policy require_hardware_key

    def enroll(
        self,
        tenant: str,
        device_id: str,
        public_key: bytes,
        *,
        signature_alg: crypto.SignatureAlgorithm = "ed25519",
        key_protection: str = "software",
        attestation: bytes | None = None,
    ) -> DeviceRecord:
        """Enrol a device's raw public key; returns the record (with key id).

        ``key_protection="tpm"`` is for callers that verified the key's TPM attestation
        (:func:`kycedge.carrier.attest.verify_attestation`). A tenant under the
        ``require_hardware_key`` policy refuses ``software`` keys.
        """
        check_tenant(tenant)
        check_device_id(device_id)
        if key_protection not in ("software", "tpm"):
            raise RegistryError(f"key protection: expected software or tpm, got {key_protection!r:.20}",
                                reason="bad-key")
        if (key_protection == "tpm") != (attestation is not None):
            raise RegistryError("key protection tpm: expected exactly with a verified attestation",
                                reason="bad-key")
        if key_protection == "tpm" and signature_alg != "es256":
            raise RegistryError("key protection tpm: expected an es256 key (a TPM has no Ed25519), "
                                f"got {signature_alg}", reason="bad-key")
        self.check_policy(tenant, key_protection)
        verify_key = crypto.verify_key_from_raw(bytes(public_key), signature_alg)
        rec = DeviceRecord(
            tenant=tenant,
            device_id=device_id,
            key_id=crypto.key_id(verify_key),
            public_key=crypto.public_key_bytes(verify_key),
            status="active",
            enrolled_at_ms=now_ms(),
            signature_alg=signature_alg,
            key_protection=key_protection,
            attestation=attestation,
        )
        self.store.put_device(rec)
        return rec

    def check_policy(self, tenant: str, key_protection: str) -> None:
        """RegistryError(reason="software-key-refused") if the tenant requires hardware keys."""
        if tenant in self.hardware_key_tenants and key_protection != "tpm":
            raise RegistryError(
                f"tenant {tenant}: policy require_hardware_key expects an attested TPM key, "
                f"got a {key_protection} key", reason="software-key-refused")

    def revoke(self, tenant: str, device_id: str, key_id: str | None = None) -> int:
        """Revoke one key (or every active key) of a device; error if nothing was active."""
        n = self.store.revoke_device(tenant, device_id, key_id, now_ms())
        if n == 0:
            which = f"key {key_id}" if key_id else "any key"
            raise RegistryError(
                f"device {tenant}/{device_id}: expected an active enrolment ({which}), got none",
                reason="unknown-device",
            )
        return n

    def lookup(self, tenant: str, device_id: str, key_id: str) -> DeviceRecord | None:
        return self.store.get_device(tenant, device_id, key_id)

    def list(self, tenant: str | None = None) -> list[DeviceRecord]:
        return self.store.list_devices(tenant)
