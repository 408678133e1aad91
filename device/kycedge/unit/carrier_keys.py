"""Config section for the carrier keys a unit needs (no secrets: public keys only).

TOML (newest key first; during a rotation several are listed, the unit encrypts to the
first and accepts receipts signed by any)::

    [carrier_keys]
    hpke = [
      { key_id = "3f5c...", public_key_file = "/etc/kycedge/carrier-hpke-2026.pub" },
      { key_id = "9a01...", public_key_file = "/etc/kycedge/carrier-hpke-2025.pub" },
    ]
    receipt = [ { key_id = "c0de...", public_key_file = "/etc/kycedge/carrier-receipt.pub" } ]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kycedge import crypto
from kycedge.core.config import section
from kycedge.core.errors import ConfigError, KeyStoreError
from kycedge.protocol.envelope.seal import CarrierKey
from kycedge.protocol.ids import KEY_ID_RE

__all__ = ["CarrierKeysConfig", "KeyFileEntry"]

MAX_KEYS = 8


@dataclass(frozen=True)
class KeyFileEntry:
    """A public key file (PEM) and the key id it must have."""

    key_id: str = section(help="32 lowercase hex characters: SHA-256(raw public key)[:16]")
    public_key_file: Path = section(help="PEM SubjectPublicKeyInfo file")  # noqa: RUF009

    def __post_init__(self) -> None:
        if not isinstance(self.key_id, str) or KEY_ID_RE.fullmatch(self.key_id) is None:
            raise ConfigError(f"key_id: expected 32 lowercase hex characters, got {self.key_id!r:.60}")


def _check_list(entries: tuple[KeyFileEntry, ...], name: str) -> None:
    if len(entries) > MAX_KEYS:
        raise ConfigError(f"carrier_keys.{name}: expected at most {MAX_KEYS} keys, got {len(entries)}")
    ids = [e.key_id for e in entries]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"carrier_keys.{name}: expected distinct key ids, got {ids}")


def _id_mismatch(e: KeyFileEntry, actual: str) -> KeyStoreError:
    return KeyStoreError(f"{e.public_key_file}: expected key id {e.key_id}, got {actual}")


@dataclass(frozen=True)
class CarrierKeysConfig:
    """Carrier public keys: HPKE keys to encrypt to (newest first) and receipt-signing keys."""

    hpke: tuple[KeyFileEntry, ...] = section(
        default=(), help="carrier X25519 HPKE public keys, newest first"
    )
    receipt: tuple[KeyFileEntry, ...] = section(
        default=(), help="carrier Ed25519 receipt-signing public keys"
    )

    def __post_init__(self) -> None:
        _check_list(self.hpke, "hpke")
        _check_list(self.receipt, "receipt")

    def load_hpke_keys(self) -> tuple[CarrierKey, ...]:
        """Read the HPKE keys (newest first); KeyStoreError if none, unreadable, or id mismatch."""
        if not self.hpke:
            raise KeyStoreError("carrier_keys.hpke: expected at least one carrier HPKE public key, got none",
                                reason="missing-key")
        out = []
        for e in self.hpke:
            key = crypto.load_kem_public_key(e.public_key_file)
            if crypto.key_id(key) != e.key_id:
                raise _id_mismatch(e, crypto.key_id(key))
            out.append(CarrierKey(key_id=e.key_id, public_key=key))
        return tuple(out)

    def load_receipt_keys(self) -> dict[str, crypto.VerifyKey]:
        """Read the receipt-signing keys as ``{key_id: key}`` for verify_receipt."""
        if not self.receipt:
            raise KeyStoreError("carrier_keys.receipt: expected at least one receipt key, got none",
                                reason="missing-key")
        out: dict[str, crypto.VerifyKey] = {}
        for e in self.receipt:
            key = crypto.load_verify_key(e.public_key_file)
            if crypto.key_id(key) != e.key_id:
                raise _id_mismatch(e, crypto.key_id(key))
            out[e.key_id] = key
        return out
