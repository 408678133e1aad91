"""A small carrier world for tests: carrier keys, a receiver, enrolled units that seal."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from kycedge import crypto
from kycedge.carrier.config import CarrierConfig
from kycedge.carrier.keyring import CarrierKeys, init_keys
from kycedge.carrier.receiver import Receiver
from kycedge.protocol.envelope import GENESIS_DIGEST, CarrierKey, Liveness, Payload, Sealed, Template, seal

NOW_MS = 1_780_000_000_000  # a fixed "now" (2026-05-28)
MODEL = ("sface-2021dec-int8", "1.0.0")
THRESHOLD = 0.363
TENANT = "acme"
REF = "rCustomerReference01"


class Clock:
    def __init__(self, ms: int = NOW_MS) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000


def unit_vector(seed: int, dim: int = 128) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return (v / np.linalg.norm(v)).astype(np.float32)


def near(v: np.ndarray, cos: float, seed: int = 99) -> np.ndarray:
    """A unit vector at cosine ``cos`` from unit vector ``v``."""
    r = np.random.default_rng(seed).standard_normal(v.shape).astype(np.float64)
    r -= r.dot(v) * v
    r /= np.linalg.norm(r)
    out = cos * v.astype(np.float64) + np.sqrt(1 - cos * cos) * r
    return out.astype(np.float32)


@dataclass
class Unit:
    """A device: its key, its sequence counter and chain (as the firmware keeps them)."""

    device_id: str
    key: Any  # a crypto.Signer or a bare Ed25519 key
    carrier_key: CarrierKey
    tenant: str = TENANT
    seq: int = 0
    prev: bytes = GENESIS_DIGEST
    sent: list[Sealed] = field(default_factory=list)

    def seal(self, template: np.ndarray | None = None, *, reference: str = REF, captured_at_ms: int = NOW_MS,
             model: tuple[str, str] = MODEL, seq: int | None = None, prev: bytes | None = None,
             message_id: uuid.UUID | None = None, format_version: int = 2,
             liveness: Liveness | None = None) -> bytes:
        t = unit_vector(1) if template is None else template
        payload = Payload(
            template=Template.from_array(t, model_id=model[0], model_version=model[1]),
            captured_at_ms=captured_at_ms,
            liveness=liveness or Liveness(passed=True, method="blink", score=0.9),
            reference=reference,
            prev_digest=self.prev if prev is None else prev,
            quality={"blur": 0.5},
        )
        s = seal(payload, tenant=self.tenant, device_id=self.device_id,
                 sequence=self.seq + 1 if seq is None else seq, signing_key=self.key,
                 carrier_key=self.carrier_key, message_id=message_id, format_version=format_version)
        if seq is None:
            self.seq += 1
            self.prev = s.digest
        self.sent.append(s)
        return s.data


@dataclass
class World:
    config: CarrierConfig
    receiver: Receiver
    clock: Clock

    @property
    def carrier_key(self) -> CarrierKey:
        kid = self.receiver.keys.newest_hpke_key_id
        return CarrierKey.from_public_key(self.receiver.keys.hpke[kid].public_key())

    def unit(self, device_id: str = "unit-0001", *, enroll: bool = True, tenant: str = TENANT,
             key: Any = None, key_protection: str = "software") -> Unit:
        """A unit with ``key`` (a Signer or a private key; default a fresh Ed25519 key), enrolled
        as ``key_protection`` (tests pass "tpm" where the attestation is not the subject)."""
        key = crypto.generate_signing_key() if key is None else key
        signer = crypto.as_signer(key)
        if enroll:
            att = b"test: not attested" if key_protection == "tpm" else None
            self.receiver.registry.enroll(tenant, device_id, crypto.public_key_bytes(signer.public_key()),
                                          signature_alg=signer.algorithm, key_protection=key_protection,
                                          attestation=att)
        return Unit(device_id, key, self.carrier_key, tenant=tenant)

    def add_reference(self, template: np.ndarray, reference: str = REF,
                      model: tuple[str, str] = MODEL) -> None:
        self.receiver.references.add_template(TENANT, reference, template, model_id=model[0],
                                              model_version=model[1], threshold=THRESHOLD)

    def reload_keys(self) -> None:
        self.receiver.keys = CarrierKeys.load(self.config)


def make_world(tmp: Path, database: str, **overrides: object) -> World:
    config = CarrierConfig(state_dir=tmp / "carrier", database=database, **overrides)  # type: ignore[arg-type]
    init_keys(config)
    clock = Clock()
    return World(config, Receiver.from_config(config, clock=clock), clock)
