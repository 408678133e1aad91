"""The unit's sealer: a chosen template → a signed, encrypted envelope (``kycedge.protocol.envelope.seal``).

It owns the device's envelope chain: the monotonic ``sequence`` and the digest of the
previous envelope (``prev_digest``), persisted in ``<state_dir>/chain.json`` (temp file
+ fsync + ``os.replace``) **before** the envelope is handed to the outbox. A crash
between the two leaves a gap in the sequence (which the carrier sees and tolerates),
never a reused sequence number (which the carrier would reject as a replay and so lose
an accepted registration).

Only ciphertext leaves this module: the template lives in the ``Capture`` the session
hands over and in the local variables of :meth:`DeviceSealer.__call__`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

from kycedge.core.errors import KeyStoreError
from kycedge.core.fsutil import atomic_write, storage_error
from kycedge.protocol.envelope import (
    GENESIS_DIGEST,
    CarrierKey,
    ConsentRecord,
    Liveness,
    Payload,
    Template,
    seal,
)
from kycedge.protocol.envelope.model import QUALITY_KEY_RE
from kycedge.unit.identity import DeviceIdentity
from kycedge.unit.session import Capture, SealedCapture

__all__ = ["CHAIN_FILE", "ChainState", "DeviceSealer"]

CHAIN_FILE = "chain.json"


def _liveness(cap: Capture) -> Liveness:
    lv = cap.liveness
    if lv is None:
        # no challenge ran (liveness disabled): say so explicitly, so the carrier never
        # mistakes the absence of a check for a pass
        return Liveness(passed=False, method="none", score=0.0)
    return Liveness(passed=lv.passed, method=lv.method, score=float(lv.score), version=lv.version,
                    prompts=lv.prompts, outcome=lv.outcome, nonce=lv.nonce or "")


class ChainState:
    """``(sequence, prev_digest)`` of the last sealed envelope, durable across crashes."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / CHAIN_FILE
        self.sequence = 0
        self.prev_digest = GENESIS_DIGEST
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text())
                seq, prev = data["sequence"], bytes.fromhex(data["prev_digest"])
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise KeyStoreError(
                    f"{self.path}: expected {{\"sequence\": int, \"prev_digest\": hex}}, got unreadable "
                    f"content ({type(e).__name__}); refusing to restart the chain (a reused sequence "
                    "would be rejected as a replay)", reason="bad-chain-state") from e
            if not isinstance(seq, int) or seq < 0 or len(prev) != 32:
                raise KeyStoreError(f"{self.path}: expected a sequence >= 0 and a 32-byte digest, "
                                    f"got {seq!r} and {len(prev)} bytes", reason="bad-chain-state")
            self.sequence, self.prev_digest = seq, prev

    def advance(self, sequence: int, digest: bytes) -> None:
        data = json.dumps({"sequence": sequence, "prev_digest": digest.hex()}).encode()
        try:
            atomic_write(self.path, data)
        except OSError as e:  # a full disk must say so (storage-full), not end in internal-error
            raise storage_error(e, f"{self.path}: cannot record the envelope chain") from e
        self.sequence, self.prev_digest = sequence, digest


class DeviceSealer:
    """``Capture -> SealedCapture`` for :class:`kycedge.unit.session.SessionManager`."""

    def __init__(self, identity: DeviceIdentity, carrier_keys: Sequence[CarrierKey], *, tenant: str,
                 device_id: str, state_dir: Path) -> None:
        if not carrier_keys:
            raise KeyStoreError("expected at least one carrier HPKE key, got none", reason="missing-key")
        self._identity = identity
        self._carrier_key = carrier_keys[0]  # newest first
        self._tenant, self._device = tenant, device_id
        self._chain = ChainState(state_dir)
        self._lock = threading.Lock()

    @property
    def sequence(self) -> int:
        return self._chain.sequence

    def __call__(self, cap: Capture) -> SealedCapture:
        quality = {k: float(v) for k, v in cap.quality.items() if QUALITY_KEY_RE.fullmatch(k)}
        template = Template.from_array(cap.template, model_id=cap.model_id, model_version=cap.model_version)
        consent = None
        if cap.consent is not None and cap.consent.accepted:
            consent = ConsentRecord(text_version=cap.consent.version,
                                    accepted_at_ms=int(cap.consent.answered_at * 1000))
        with self._lock:
            payload = Payload(
                template=template,
                captured_at_ms=int(cap.captured_at * 1000),
                liveness=_liveness(cap),
                reference=cap.registration_ref,
                prev_digest=self._chain.prev_digest,
                quality=dict(sorted(quality.items())[:16]),
                consent=consent,
            )
            seq = self._chain.sequence + 1
            sealed = seal(payload, tenant=self._tenant, device_id=self._device, sequence=seq,
                          signing_key=self._identity.signer, carrier_key=self._carrier_key)
            self._chain.advance(seq, sealed.digest)
        return SealedCapture(message_id=str(sealed.header.message_id), envelope=sealed.data)
