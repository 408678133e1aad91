"""Reference templates: one per (tenant, registration reference), from an ID-document photo.

The photo goes through the SAME vision pipeline as the unit (``kycedge.vision.Pipeline``),
so probe and reference come from one model id and version; the reference row keeps that
model id, version and the pipeline's cosine threshold (from the model manifest), and the
template itself only encrypted at rest (AAD = table, tenant, reference, model).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from kycedge import crypto
from kycedge.carrier.store import ReferenceRecord, SqlStore, now_ms
from kycedge.core.errors import CarrierError, EnvelopeError, KycEdgeError
from kycedge.protocol.match import check_template, template_from_bytes, template_to_bytes

__all__ = ["Reference", "ReferenceStoreError", "References", "TemplatePipeline", "reference_aad"]


class ReferenceStoreError(CarrierError):
    reason = "bad-reference"


class TemplatePipeline(Protocol):
    """What :meth:`References.add_image` needs of ``kycedge.vision.Pipeline``."""

    model_id: str
    model_version: str
    threshold: float

    def process_image_bytes(self, data: bytes) -> Any: ...


@dataclass(frozen=True)
class Reference:
    tenant: str
    reference: str
    model_id: str
    model_version: str
    threshold: float
    template: npt.NDArray[np.float32]


# Decrypted references by their stored ciphertext (which is unique: random nonce, AAD
# binds tenant/reference/model). A replaced or removed reference has a new/no row, so a
# stale entry is never returned for it: the row is always read from the store first.
_CACHE: dict[bytes, tuple[bytes, Reference]] = {}
_CACHE_MAX = 4096


def reference_aad(tenant: str, reference: str, model_id: str, model_version: str) -> bytes:
    return "\x00".join(("reference_templates", tenant, reference, model_id, model_version)).encode()


def _check_reference_id(reference: str) -> str:
    from kycedge.protocol.envelope.model import check_reference

    try:
        return check_reference(reference)
    except EnvelopeError as e:
        raise ReferenceStoreError(f"registration reference: {e.message}", reason="bad-reference") from e


@dataclass(frozen=True)
class References:
    store: SqlStore
    at_rest_key: bytes

    def add_template(
        self,
        tenant: str,
        reference: str,
        template: npt.ArrayLike,
        *,
        model_id: str,
        model_version: str,
        threshold: float,
        replace: bool = False,
    ) -> ReferenceRecord:
        """Store an already computed reference template (encrypted)."""
        from kycedge.carrier.registry import check_tenant

        check_tenant(tenant)
        _check_reference_id(reference)
        try:
            vec = check_template(template, "reference template")
        except ValueError as e:
            raise ReferenceStoreError(str(e)) from e
        if not 0.0 < threshold < 1.0:
            raise ReferenceStoreError(f"threshold: expected a cosine threshold in (0, 1), got {threshold}")
        aad = reference_aad(tenant, reference, model_id, model_version)
        ct = crypto.encrypt_at_rest(self.at_rest_key, template_to_bytes(vec), aad)
        rec = ReferenceRecord(tenant, reference, model_id, model_version, float(threshold), int(vec.size),
                              ct, now_ms())
        self.store.put_reference(rec, replace=replace)
        return rec

    def add_image(
        self, tenant: str, reference: str, image: bytes, pipeline: TemplatePipeline, *, replace: bool = False
    ) -> ReferenceRecord:
        """Enrol from an ID-document photo (untrusted bytes) through the vision pipeline."""
        _check_reference_id(reference)
        try:
            res = pipeline.process_image_bytes(image)
        except KycEdgeError as e:
            raise ReferenceStoreError(f"reference photo: {e.message}", reason=e.reason) from e
        if not res.ok or res.template is None:
            raise ReferenceStoreError(
                f"reference photo: expected exactly one usable face, got {res.reason}: {res.message}",
                reason=str(res.reason),
            )
        return self.add_template(
            tenant, reference, res.template, model_id=pipeline.model_id,
            model_version=pipeline.model_version, threshold=float(pipeline.threshold), replace=replace,
        )

    def get(self, tenant: str, reference: str) -> Reference | None:
        rec = self.store.get_reference(tenant, reference)
        if rec is None:
            return None
        return self.decrypt(rec)

    def get_many(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Reference]:
        """References by ``(tenant, reference)`` in one storage round trip; missing are absent."""
        if not keys:
            return {}
        return {k: self.decrypt(rec) for k, rec in self.store.get_references(keys).items()}

    def decrypt(self, rec: ReferenceRecord) -> Reference:
        hit = _CACHE.get(rec.template_ct)
        if hit is not None and hit[0] == self.at_rest_key:
            return hit[1]
        ref = self._decrypt(rec)
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[rec.template_ct] = (self.at_rest_key, ref)
        return ref

    def _decrypt(self, rec: ReferenceRecord) -> Reference:
        try:
            plain = crypto.decrypt_at_rest(
                self.at_rest_key, rec.template_ct,
                reference_aad(rec.tenant, rec.reference, rec.model_id, rec.model_version),
            )
            vec = template_from_bytes(plain)
        except (EnvelopeError, ValueError) as e:
            raise CarrierError(
                f"reference {rec.tenant}/{rec.reference}: stored template does not decrypt with the "
                f"configured at-rest key ({e})",
                reason="at-rest-key",
            ) from e
        return Reference(rec.tenant, rec.reference, rec.model_id, rec.model_version, rec.threshold, vec)
