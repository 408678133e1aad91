"""Carrier storage schema: the versioned migrations and the row/record types.

One schema for both backends; SQL types are spelled as ``{blob}`` / ``{real}`` /
``{bigint}`` tokens that each backend fills in. The list of migrations is append-only:
a released migration is never edited; a change is a new migration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "MIGRATIONS",
    "Commit",
    "ConflictHandler",
    "DeviceRecord",
    "DeviceStatus",
    "Migration",
    "PurgeCounts",
    "Recorded",
    "ReferenceRecord",
    "StoredReceipt",
    "StoredTemplate",
    "TemplateRow",
]

DeviceStatus = Literal["active", "revoked"]


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


# Append only: a released migration is never edited. Tokens: {blob} {real} {bigint}.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "devices, references, receipts, sequences, templates",
        (
            """CREATE TABLE devices (
                tenant TEXT NOT NULL,
                device_id TEXT NOT NULL,
                key_id TEXT NOT NULL,
                public_key {blob} NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
                enrolled_at_ms {bigint} NOT NULL,
                revoked_at_ms {bigint},
                PRIMARY KEY (tenant, device_id, key_id))""",
            """CREATE TABLE reference_templates (
                tenant TEXT NOT NULL,
                reference TEXT NOT NULL,
                model_id TEXT NOT NULL,
                model_version TEXT NOT NULL,
                threshold {real} NOT NULL,
                dim INTEGER NOT NULL,
                template_ct {blob} NOT NULL,
                created_at_ms {bigint} NOT NULL,
                PRIMARY KEY (tenant, reference))""",
            """CREATE TABLE receipts (
                message_id TEXT NOT NULL PRIMARY KEY,
                tenant TEXT NOT NULL,
                device_id TEXT NOT NULL,
                envelope_hash {blob} NOT NULL,
                status TEXT NOT NULL,
                reason TEXT NOT NULL,
                receipt {blob} NOT NULL,
                received_at_ms {bigint} NOT NULL)""",
            "CREATE INDEX receipts_received ON receipts (received_at_ms)",
            """CREATE TABLE sequences (
                tenant TEXT NOT NULL,
                device_id TEXT NOT NULL,
                key_id TEXT NOT NULL,
                seq {bigint} NOT NULL,
                message_id TEXT NOT NULL,
                digest {blob} NOT NULL,
                prev_digest {blob} NOT NULL,
                received_at_ms {bigint} NOT NULL,
                PRIMARY KEY (tenant, device_id, key_id, seq))""",
            "CREATE INDEX sequences_received ON sequences (received_at_ms)",
            """CREATE TABLE templates (
                message_id TEXT NOT NULL PRIMARY KEY,
                tenant TEXT NOT NULL,
                device_id TEXT NOT NULL,
                reference TEXT NOT NULL,
                model_id TEXT NOT NULL,
                model_version TEXT NOT NULL,
                captured_at_ms {bigint} NOT NULL,
                received_at_ms {bigint} NOT NULL,
                template_ct {blob} NOT NULL)""",
            "CREATE INDEX templates_received ON templates (received_at_ms)",
        ),
    ),
    Migration(
        2,
        "one enrolment per device public key (a key identifies exactly one unit, even after revocation)",
        ("CREATE UNIQUE INDEX devices_public_key ON devices (public_key)",),
    ),
    Migration(
        3,
        "each enrolled key's signature algorithm and where it lives (software file or TPM, attested)",
        (
            "ALTER TABLE devices ADD COLUMN signature_alg TEXT NOT NULL DEFAULT 'ed25519' "
            "CHECK (signature_alg IN ('ed25519', 'es256'))",
            "ALTER TABLE devices ADD COLUMN key_protection TEXT NOT NULL DEFAULT 'software' "
            "CHECK (key_protection IN ('software', 'tpm'))",
            # tpm keys: CBOR {ek_sha256, ek_issuer, ak_pub} of the verified attestation
            "ALTER TABLE devices ADD COLUMN attestation {blob}",
        ),
    ),
)


@dataclass(frozen=True)
class DeviceRecord:
    tenant: str
    device_id: str
    key_id: str
    public_key: bytes
    status: DeviceStatus
    enrolled_at_ms: int
    revoked_at_ms: int | None = None
    signature_alg: str = "ed25519"  # "ed25519" | "es256"
    key_protection: str = "software"  # "software" | "tpm" (tpm only after a verified attestation)
    attestation: bytes | None = None  # tpm: CBOR {ek_sha256, ek_issuer, ak_pub}


@dataclass(frozen=True)
class ReferenceRecord:
    tenant: str
    reference: str
    model_id: str
    model_version: str
    threshold: float
    dim: int
    template_ct: bytes
    created_at_ms: int


@dataclass(frozen=True)
class StoredTemplate:
    """An accepted template, already encrypted at rest (``template_ct``)."""

    reference: str
    model_id: str
    model_version: str
    captured_at_ms: int
    template_ct: bytes


@dataclass(frozen=True)
class TemplateRow:
    message_id: str
    tenant: str
    device_id: str
    reference: str
    model_id: str
    model_version: str
    captured_at_ms: int
    received_at_ms: int
    template_ct: bytes


@dataclass(frozen=True)
class Commit:
    """One authenticated envelope's outcome, to be written atomically.

    ``envelope_hash`` is SHA-256 of the envelope bytes as received (the duplicate fast
    path compares it); ``digest``/``prev_digest`` are the chain values of the wire format
    (SHA-256 of the signed part, and the one the device named as its predecessor).
    ``seq`` is None when the outcome does not consume the device's sequence number
    (``stale``); ``template`` is set only for accepted envelopes.
    """

    message_id: str
    tenant: str
    device_id: str
    key_id: str
    seq: int | None
    envelope_hash: bytes
    digest: bytes
    prev_digest: bytes
    status: str
    reason: str
    receipt: bytes
    received_at_ms: int
    template: StoredTemplate | None = None


@dataclass(frozen=True)
class Recorded:
    """What the store did with a :class:`Commit`.

    ``first`` is False when the message id was already recorded: ``receipt`` is then the
    FIRST receipt, byte for byte, and nothing was written.
    """

    message_id: str
    receipt: bytes
    status: str
    reason: str
    first: bool


@dataclass(frozen=True)
class StoredReceipt:
    envelope_hash: bytes
    receipt: bytes
    status: str
    reason: str


@dataclass(frozen=True)
class PurgeCounts:
    templates: int
    receipts: int
    sequences: int


# on_conflict(commit, why) -> a replacement commit (seq None, no template) that records
# the rejection instead; ``why`` explains the sequence/chain conflict.
ConflictHandler = Callable[[Commit, str], Commit]
