"""The ``[carrier]`` config section of the reference receiver.

Secrets are files named by ``Path`` fields (the carrier's HPKE private keys, the
receipt-signing key, the at-rest key); the storage is a URL-ish string: a filesystem
path (SQLite, the default) or a ``postgresql://`` DSN.

Time values are in seconds (``_s``); sizes in bytes (``_bytes``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kycedge.core.config import section
from kycedge.core.errors import ConfigError
from kycedge.protocol.ids import TENANT_RE

DAY_S = 86_400
#: where the receiver keeps its keys and SQLite file unless ``[carrier] state_dir`` says otherwise
DEFAULT_STATE_DIR = Path(os.environ.get("KYCEDGE_CARRIER_STATE_DIR", "/var/lib/kycedge-carrier"))


LivenessPolicy = Literal["required", "report"]


@dataclass(frozen=True)
class TenantPolicy:
    """One tenant's policy (``[[carrier.tenants]]``)."""

    tenant: str = section(help="tenant id")
    liveness: Literal["required", "report"] = section(
        "required", help="required: an envelope without a passed liveness challenge is rejected "
        "(liveness-not-passed) and not matched; report: matched anyway, the result is recorded")


@dataclass(frozen=True)
class CarrierConfig:
    """Carrier receiver: keys, storage, replay window and retention."""

    state_dir: Path = section(  # noqa: RUF009 - Path is immutable
        DEFAULT_STATE_DIR,
        help="directory for the SQLite database and keys (default /var/lib/kycedge-carrier, "
        "env KYCEDGE_CARRIER_STATE_DIR)")
    database: str = section(
        "",
        help="storage: empty = SQLite at state_dir/carrier.db; a file path = SQLite; "
        "postgresql://... = PostgreSQL (psycopg 3)",
    )
    hpke_keys: tuple[Path, ...] = section(
        default_factory=tuple,
        help="carrier HPKE (X25519) private key files, newest first; every one listed can decrypt "
        "(several are active during a rotation). Empty = state_dir/keys/hpke-*.pem",
    )
    receipt_key: Path | None = section(  # noqa: RUF009
        None, help="Ed25519 receipt-signing private key file (default state_dir/keys/receipt.pem)"
    )
    receipt_hsm_module: Path | None = section(  # noqa: RUF009
        None, help="PKCS#11 module of the HSM holding the receipt key (e.g. "
        "/usr/lib/softhsm/libsofthsm2.so); set = receipts are signed inside the token, receipt_key unused",
    )
    receipt_hsm_token: str = section("", help="label of the PKCS#11 token holding the receipt key")
    receipt_hsm_key: str = section("kycedge-receipt", help="label of the receipt key in the token")
    receipt_hsm_pin_file: Path | None = section(  # noqa: RUF009
        None, help="0600 file holding the token's user PIN (required with receipt_hsm_module)")
    at_rest_key: Path | None = section(  # noqa: RUF009
        None, help="32-byte at-rest AEAD key file for stored templates (default state_dir/keys/at-rest.key)"
    )
    max_envelope_bytes: int = section(
        16384, min=256, max=16384,
        help="envelopes longer than this are refused unread (the wire format allows 16384)",
    )
    replay_window_s: int = section(
        30 * DAY_S,
        min=60,
        max=366 * DAY_S,
        help="captures older than this (by the device's capture time) are rejected as stale",
    )
    future_skew_s: int = section(
        300, min=0, max=DAY_S, help="captures dated this far in the future are still accepted"
    )
    template_retention_s: int = section(
        90 * DAY_S, min=60, max=10 * 366 * DAY_S, help="accepted templates are purged after this"
    )
    receipt_retention_s: int = section(
        45 * DAY_S,
        min=60,
        max=10 * 366 * DAY_S,
        help="receipts, de-duplication and sequence entries are purged after this; "
        "must be >= replay_window_s + future_skew_s",
    )
    require_hardware_key: tuple[str, ...] = section(
        default_factory=tuple,
        help="tenants whose units must sign with a TPM-held key attested at enrolment: software keys "
        "are refused at enrolment and their envelopes rejected (revoked-device)",
    )
    tpm_ca_certificates: tuple[Path, ...] = section(
        default_factory=tuple,
        help="PEM files of the TPM manufacturer CAs (roots and intermediates) whose endorsement-key "
        "certificates the carrier trusts when it enrols a TPM-held unit key",
    )
    batch_max: int = section(
        256, min=1, max=10_000, help="most envelopes one storage transaction takes (ingest_batch)"
    )
    liveness: Literal["required", "report"] = section(
        "required", help="liveness policy of tenants not listed in tenants: required or report")
    tenants: tuple[TenantPolicy, ...] = section(
        default_factory=tuple, help="per-tenant policies, e.g. [[carrier.tenants]] tenant = \"acme\" "
        "liveness = \"report\" (units without the challenge)")

    def liveness_policy(self, tenant: str) -> LivenessPolicy:
        """The tenant's liveness policy (its own entry, else the default)."""
        for t in self.tenants:
            if t.tenant == tenant:
                return t.liveness
        return self.liveness

    def __post_init__(self) -> None:
        for i, tenant in enumerate(self.require_hardware_key):
            if not isinstance(tenant, str) or TENANT_RE.fullmatch(tenant) is None:
                raise ConfigError(f"carrier.require_hardware_key[{i}]: expected a tenant matching "
                                  f"{TENANT_RE.pattern}, got {tenant!r:.40}")
        hsm_incomplete = not self.receipt_hsm_token or self.receipt_hsm_pin_file is None
        if self.receipt_hsm_module is not None and hsm_incomplete:
            raise ConfigError("carrier.receipt_hsm_module: expected receipt_hsm_token and "
                              f"receipt_hsm_pin_file beside it, got token {self.receipt_hsm_token!r}, "
                              f"pin file {self.receipt_hsm_pin_file}")
        seen = [t.tenant for t in self.tenants]
        dup = sorted({t for t in seen if seen.count(t) > 1})
        if dup:
            raise ConfigError(f"carrier.tenants: expected each tenant once, got {', '.join(dup)} twice")
        if self.receipt_retention_s < self.replay_window_s + self.future_skew_s:
            raise ConfigError(
                "carrier.receipt_retention_s: expected >= replay_window_s + future_skew_s "
                f"({self.replay_window_s + self.future_skew_s}) so that a replay is always either "
                f"de-duplicated or stale, got {self.receipt_retention_s}"
            )

    # Resolved paths --------------------------------------------------------------------

    @property
    def keys_dir(self) -> Path:
        return self.state_dir / "keys"

    @property
    def database_target(self) -> str:
        return self.database or str(self.state_dir / "carrier.db")

    @property
    def receipt_key_path(self) -> Path:
        return self.receipt_key or self.keys_dir / "receipt.pem"

    @property
    def at_rest_key_path(self) -> Path:
        return self.at_rest_key or self.keys_dir / "at-rest.key"

    def hpke_key_paths(self) -> tuple[Path, ...]:
        """The configured HPKE keys, or state_dir/keys/hpke-*.pem newest (by name) first."""
        if self.hpke_keys:
            return self.hpke_keys
        return tuple(sorted(self.keys_dir.glob("hpke-*.pem"), reverse=True))
