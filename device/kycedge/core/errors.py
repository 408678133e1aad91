"""One root exception, one subclass per concern.

Every error the package raises on purpose derives from :class:`KycEdgeError`. Library
errors (Pillow, LiteRT, cryptography, sqlite3, paho, psycopg, tuf) are converted at the
module boundary that imports the library (``raise XError(...) from e``), so callers
handle one hierarchy and never a third-party type.

Errors that describe a rejected input carry a short, stable, machine-readable
``reason`` code (``"truncated-image"``, ``"bad-signature"``…) beside the human message;
operators and the agent's app act on the code, people read the message.
"""

from __future__ import annotations


class KycEdgeError(Exception):
    """Root of every error kycedge raises on purpose."""

    reason: str = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigError(KycEdgeError):
    """A config file or value is missing, of the wrong type, out of range or unknown."""

    reason = "bad-config"


class IdError(KycEdgeError):
    """An identifier (tenant, device, reference, message id, key id...) breaks its grammar.

    The grammars live in :mod:`kycedge.protocol.ids`.
    """

    reason = "bad-id"


class MessageError(KycEdgeError):
    """A status or announce message (``kycedge.protocol.status``) has the wrong shape."""

    reason = "bad-message"


class ImageError(KycEdgeError):
    """Image bytes could not be decoded into a usable frame (reason says why)."""

    reason = "bad-image"


class ModelError(KycEdgeError):
    """A model file, its manifest or the inference runtime is unusable."""

    reason = "bad-model"


class CaptureError(KycEdgeError):
    """A frame source (camera, replay) failed."""

    reason = "capture-failed"


class KeyStoreError(KycEdgeError):
    """A key file is missing, unreadable, of the wrong type or has unsafe permissions."""

    reason = "bad-key"


class EnvelopeError(KycEdgeError):
    """An envelope or receipt is malformed or fails verification (reason says why)."""

    reason = "malformed"


class StorageError(KycEdgeError):
    """The unit's state filesystem refused a write: ``storage-full`` (no space or quota left),
    ``read-only`` or ``storage-error``. What was already stored is untouched."""

    reason = "storage-error"


class OutboxError(KycEdgeError):
    """The durable outbox cannot take or give an envelope."""

    reason = "outbox-error"


class OutboxFullError(OutboxError):
    """The outbox is at its byte or count limit; new captures are refused."""

    reason = "outbox-full"


class UplinkError(KycEdgeError):
    """The MQTT session failed (connect, TLS, publish ack)."""

    reason = "uplink-error"


class CarrierError(KycEdgeError):
    """The carrier receiver cannot process a request (storage, registry)."""

    reason = "carrier-error"


class UpdateError(KycEdgeError):
    """A model bundle update failed (fetch, verify, self-test, switch)."""

    reason = "update-failed"


class SessionError(KycEdgeError):
    """A registration session was refused, cancelled or timed out."""

    reason = "session-error"
