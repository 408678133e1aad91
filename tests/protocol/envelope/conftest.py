"""Fixtures for envelope tests: fresh keys and a valid payload."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from kycedge import crypto
from kycedge.protocol.envelope import CarrierKey, Liveness, Payload, Template


@dataclass(frozen=True)
class Keys:
    device: crypto.SigningKey
    carrier: crypto.KemPrivateKey
    carrier_key: CarrierKey
    receipt: crypto.SigningKey

    @property
    def carrier_private(self) -> dict[str, crypto.KemPrivateKey]:
        return {self.carrier_key.key_id: self.carrier}


def make_keys() -> Keys:
    carrier = crypto.generate_kem_key()
    return Keys(crypto.generate_signing_key(), carrier, CarrierKey.from_public_key(carrier.public_key()),
                crypto.generate_signing_key())


def make_payload(dim: int = 128, seed: int = 0) -> Payload:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    v /= np.linalg.norm(v)
    return Payload(
        template=Template.from_array(v, model_id="sface-2021dec-int8", model_version="1.0.0"),
        captured_at_ms=1_764_000_000_000,
        liveness=Liveness(passed=True, method="blink", score=0.93),
        reference="rTestReference_abcdEFGH",
        quality={"blur": 0.41, "face_px": 212.0, "yaw_deg": -3.5},
    )


@pytest.fixture(scope="module")
def keys() -> Keys:
    return make_keys()


@pytest.fixture
def payload() -> Payload:
    return make_payload()
