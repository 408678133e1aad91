"""Device registry: which unit (tenant, device id) may send, under which Ed25519 key.

One row per enrolled key: ``(tenant, device_id, key_id)`` with the raw 32-byte public
key and a status, ``active`` or ``revoked``. A unit whose key is replaced is enrolled
again under the new key id (its sequence numbers restart under that key id) and the
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

    def enroll(self, tenant: str, device_id: str, public_key: bytes) -> DeviceRecord:
        """Enrol a device's raw 32-byte Ed25519 public key; returns the record (with key id)."""
        check_tenant(tenant)
        check_device_id(device_id)
        verify_key = crypto.verify_key_from_bytes(bytes(public_key))
        rec = DeviceRecord(
            tenant=tenant,
            device_id=device_id,
            key_id=crypto.key_id(verify_key),
            public_key=crypto.public_key_bytes(verify_key),
            status="active",
            enrolled_at_ms=now_ms(),
        )
        self.store.put_device(rec)
        return rec

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
