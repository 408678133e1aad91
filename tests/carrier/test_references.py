"""Reference enrolment (through a stand-in for the vision pipeline) and registry checks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from kycedge import crypto
from kycedge.carrier.references import References, ReferenceStoreError
from kycedge.carrier.registry import Registry, RegistryError
from kycedge.carrier.store import SqlStore
from kycedge.core.errors import ImageError

from .helpers import unit_vector


@dataclass
class FakeResult:
    ok: bool
    reason: str
    message: str
    template: np.ndarray | None


class FakePipeline:
    """Same surface as kycedge.vision.Pipeline for what References uses."""

    model_id = "sface-2021dec-int8"
    model_version = "1.0.0"
    threshold = 0.363

    def process_image_bytes(self, data: bytes) -> FakeResult:
        if data == b"no face":
            return FakeResult(False, "no-face", "no face found", None)
        if data == b"broken":
            raise ImageError("truncated", reason="truncated-image")
        return FakeResult(True, "ok", "", unit_vector(len(data)))


def test_add_image_stores_an_encrypted_reference(store: SqlStore) -> None:
    key = crypto.generate_at_rest_key()
    refs = References(store, key)
    rec = refs.add_image("acme", "rIdPhotoReference01", b"x" * 7, FakePipeline())
    assert (rec.model_id, rec.model_version) == ("sface-2021dec-int8", "1.0.0")
    assert (rec.threshold, rec.dim) == (0.363, 128)
    got = refs.get("acme", "rIdPhotoReference01")
    assert got is not None
    np.testing.assert_array_equal(got.template, unit_vector(7))
    assert unit_vector(7).astype("<f4").tobytes() not in rec.template_ct
    # a different at-rest key cannot read it
    with pytest.raises(Exception, match="does not decrypt"):
        References(store, crypto.generate_at_rest_key()).get("acme", "rIdPhotoReference01")


def test_add_image_refusals(store: SqlStore) -> None:
    refs = References(store, crypto.generate_at_rest_key())
    with pytest.raises(ReferenceStoreError) as e:
        refs.add_image("acme", "rIdPhotoReference01", b"no face", FakePipeline())
    assert e.value.reason == "no-face"
    with pytest.raises(ReferenceStoreError) as e:
        refs.add_image("acme", "rIdPhotoReference01", b"broken", FakePipeline())
    assert e.value.reason == "truncated-image"
    with pytest.raises(ReferenceStoreError, match="national ID"):
        refs.add_image("acme", "r123456789012345", b"x", FakePipeline())
    with pytest.raises(RegistryError, match="tenant"):
        refs.add_template("ACME!", "rIdPhotoReference01", unit_vector(1), model_id="m", model_version="1",
                          threshold=0.3)
    with pytest.raises(ReferenceStoreError, match="threshold"):
        refs.add_template("acme", "rIdPhotoReference01", unit_vector(1), model_id="m", model_version="1",
                          threshold=1.5)
    with pytest.raises(ReferenceStoreError, match="expected finite values"):
        refs.add_template("acme", "rIdPhotoReference01", np.full(16, np.nan), model_id="m", model_version="1",
                          threshold=0.3)
    assert store.counts()["reference_templates"] == 0


def test_registry_validation(store: SqlStore) -> None:
    reg = Registry(store)
    pub = crypto.public_key_bytes(crypto.generate_signing_key().public_key())
    with pytest.raises(RegistryError, match="tenant"):
        reg.enroll("Acme Corp", "unit-1", pub)
    with pytest.raises(RegistryError, match="device id"):
        reg.enroll("acme", "unit/1", pub)
    with pytest.raises(Exception, match="32-byte"):
        reg.enroll("acme", "unit-1", b"short")
    rec = reg.enroll("acme", "unit-1", pub)
    assert rec.key_id == crypto.key_id(crypto.verify_key_from_bytes(pub))
    with pytest.raises(RegistryError, match="expected an active enrolment"):
        reg.revoke("acme", "unit-2")
    assert reg.revoke("acme", "unit-1") == 1
    assert reg.lookup("acme", "unit-1", rec.key_id).status == "revoked"  # type: ignore[union-attr]
