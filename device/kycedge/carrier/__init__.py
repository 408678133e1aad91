"""The carrier's reference receiver: ingest sealed envelopes, answer with signed receipts.

Public API (see docs/receiver.md)::

    from kycedge.carrier import CarrierConfig, Receiver
    rx = Receiver.from_config(config)          # loads keys, opens + migrates storage
    receipt = rx.ingest(envelope_bytes)        # bytes | None; never raises on input
    out = rx.handle(envelope_bytes)            # IngestOutcome: receipt, reason, receipt_topic, ...
    outs = rx.handle_batch([env1, env2, ...])  # one storage transaction for the batch
    rx.purge()                                 # retention
    rx.registry.enroll(tenant, device_id, raw_public_key) / .revoke(...) / .list()
    rx.references.add_image(tenant, ref, image_bytes, pipeline)

Storage failures raise :class:`kycedge.core.errors.CarrierError` (nothing recorded, no
receipt: do not acknowledge the transport message).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kycedge.carrier.config import CarrierConfig

__all__ = ["CarrierConfig", "IngestOutcome", "Receiver"]

if TYPE_CHECKING:
    from kycedge.carrier.receiver import IngestOutcome, Receiver


def __getattr__(name: str) -> Any:
    if name in ("IngestOutcome", "Receiver"):
        from kycedge.carrier import receiver

        return getattr(receiver, name)
    raise AttributeError(f"module 'kycedge.carrier' has no attribute {name!r}")
