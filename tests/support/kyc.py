"""A carrier and units with real keys, real envelopes and real receipts (for tests and tools).

    carrier = Carrier.create(tmp / "carrier")          # keys + SQLite store
    unit = carrier.enroll(tmp / "unit", "acme", "u1")  # Ed25519 key, enrolled in the registry
    sealed = unit.seal(i)                              # deterministic message id / chain per i
    verify = unit.receipt_verifier()                   # for kycedge.unit.forwarder.Forwarder

Envelope ``i`` of a unit always has the same message id, sequence ``i + 1`` and chain
digest (Ed25519 is deterministic, the payload is fixed per ``i``), so a process that is
killed and restarted can re-create "the same" registration; only the HPKE ciphertext
differs between two seals, and the outbox refuses a second version of a message id.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from kycedge import crypto
from kycedge.carrier.config import CarrierConfig
from kycedge.carrier.keyring import init_keys
from kycedge.core.errors import CarrierError
from kycedge.protocol.envelope import (
    GENESIS_DIGEST,
    CarrierKey,
    Liveness,
    Payload,
    Receipt,
    Sealed,
    Template,
    new_message_id,
    seal,
    verify_receipt,
)

T0_MS = 1_790_000_000_000  # overridden per run with the real clock


def message_id_for(tenant: str, device: str, i: int, run: str = "", t0_ms: int = T0_MS) -> uuid.UUID:
    """A deterministic UUIDv7 for registration ``i``."""
    h = hashlib.sha256(f"{run}/{tenant}/{device}/{i}".encode()).digest()
    return new_message_id(now_ms=t0_ms + i, random_bytes=h[:10])


@dataclass
class Carrier:
    dir: Path
    config: CarrierConfig

    @classmethod
    def create(cls, directory: Path, **overrides: Any) -> Carrier:
        cfg = CarrierConfig(state_dir=directory, **overrides)
        init_keys(cfg)
        return cls(directory, cfg)

    def receiver(self) -> Any:
        from kycedge.carrier.receiver import Receiver

        return Receiver.from_config(self.config)

    def hpke_public(self) -> CarrierKey:
        path = self.config.hpke_key_paths()[0]
        return CarrierKey.from_public_key(crypto.load_kem_private_key(path).public_key())

    def receipt_public_keys(self) -> dict[str, crypto.VerifyKey]:
        pk = crypto.load_signing_key(self.config.receipt_key_path).public_key()
        return {crypto.key_id(pk): pk}

    def enroll(self, directory: Path, tenant: str, device: str, *, run: str = "",
               t0_ms: int = T0_MS, register: bool = True) -> Unit:
        """The unit's key (made once in ``directory``), enrolled at the carrier unless
        ``register`` is False (a unit installed before its enrolment: call again later)."""
        directory.mkdir(parents=True, exist_ok=True)
        key_path = directory / "device-ed25519.pem"
        if key_path.exists():
            sk = crypto.load_signing_key(key_path)
        else:
            sk = crypto.generate_signing_key()
            crypto.save_private_key(key_path, sk)
        if not register:
            return Unit(tenant, device, sk, self.hpke_public(), self.receipt_public_keys(), run=run,
                        t0_ms=t0_ms)
        rx = self.receiver()
        try:
            rx.registry.enroll(tenant, device, crypto.public_key_bytes(sk.public_key()))
        except CarrierError as e:
            if "already enrolled" not in e.message:
                raise
        finally:
            rx.close()
        return Unit(tenant, device, sk, self.hpke_public(), self.receipt_public_keys(), run=run, t0_ms=t0_ms)


@dataclass
class Unit:
    tenant: str
    device: str
    signing_key: crypto.SigningKey
    carrier_key: CarrierKey
    receipt_keys: dict[str, crypto.VerifyKey]
    run: str = ""
    t0_ms: int = T0_MS
    _digests: dict[int, bytes] = field(default_factory=dict)

    def payload(self, i: int, prev: bytes) -> Payload:
        rng = np.random.default_rng(i)
        vec = rng.standard_normal(128).astype(np.float32)
        vec /= np.linalg.norm(vec)
        return Payload(
            template=Template.from_array(vec, model_id="sface", model_version="2021dec-int8"),
            captured_at_ms=self.t0_ms + i,
            liveness=Liveness(passed=True, method="blink", score=0.9),
            reference=f"registration-{i:06d}-x",
            prev_digest=prev,
        )

    def message_id(self, i: int) -> uuid.UUID:
        return message_id_for(self.tenant, self.device, i, self.run, self.t0_ms)

    def _prev(self, i: int) -> bytes:
        if i == 0:
            return GENESIS_DIGEST
        if i - 1 not in self._digests:
            self.seal(i - 1)
        return self._digests[i - 1]

    def seal(self, i: int, *, message_id: uuid.UUID | None = None, sequence: int | None = None) -> Sealed:
        """Envelope ``i`` (sequence i+1, chained to envelope i-1)."""
        s = seal(self.payload(i, self._prev(i)), tenant=self.tenant, device_id=self.device,
                 sequence=i + 1 if sequence is None else sequence, signing_key=self.signing_key,
                 carrier_key=self.carrier_key, message_id=message_id or self.message_id(i))
        if message_id is None and sequence is None:
            self._digests[i] = s.digest
        return s

    def verify(self, raw: bytes) -> Receipt:
        return verify_receipt(raw, self.receipt_keys, expected_device_id=self.device,
                              expected_tenant=self.tenant)

    def receipt_verifier(self) -> Callable[[bytes], Receipt]:
        return self.verify
