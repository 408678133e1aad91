"""The carrier receiver: envelope bytes in, a signed receipt out. Transport-agnostic.

Pipeline for one envelope (``Receiver.handle``; ``ingest`` returns just the receipt)::

    size limit ─► peek_header ─► duplicate fast path (same bytes, known message id)
      ─► registry (unknown-device / revoked-device) ─► open: decrypt with the carrier key
      the header names, verify the device signature (undecryptable / bad-signature /
      malformed / unsupported-version) ─► capture-time window (stale) ─► the tenant's
      liveness policy (liveness-not-passed under "required") ─► reference +
      1:1 match (match / no-match / no-reference / model-mismatch) ─► ONE transaction:
      de-duplicate by message id, claim the per-device sequence (replayed), store the
      receipt and the template (encrypted at rest)

Receipt rules (see docs/receiver.md):

* envelopes whose header cannot be parsed get NO receipt (there is no message id to
  name or device to route to); ``counters["no-receipt"]`` counts them;
* rejections before authentication (unknown-device, revoked-device, bad-signature,
  undecryptable, malformed, unsupported-version) are signed but NOT recorded: the
  header is unauthenticated, so recording them would let anyone who can publish a
  forged envelope pin a rejection on a genuine message id;
* every authenticated outcome (stale, liveness-not-passed, replayed, bad-template, match,
  no-match, no-reference, model-mismatch) is recorded under its message id; every later delivery of that
  message id gets the FIRST receipt, byte for byte, and has no effect.

The receiver never raises on input. It raises :class:`CarrierError` only when its own
storage fails (then nothing was recorded and no receipt exists: the transport must not
acknowledge the message, the unit will deliver it again).
"""

from __future__ import annotations

import collections
import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Literal, Union

from kycedge import crypto
from kycedge.carrier.config import CarrierConfig
from kycedge.carrier.keyring import CarrierKeys
from kycedge.carrier.references import Reference, References
from kycedge.carrier.registry import Registry
from kycedge.carrier.store import (
    Commit,
    DeviceRecord,
    PurgeCounts,
    SqlStore,
    StoredReceipt,
    StoredTemplate,
    open_store,
    replace,
)
from kycedge.core.errors import CarrierError, EnvelopeError, KeyStoreError
from kycedge.protocol import topics
from kycedge.protocol.envelope import (
    Liveness,
    Opened,
    Receipt,
    open_envelope,
    peek_header,
    sign_receipt,
    verify_receipt,
)
from kycedge.protocol.envelope.header import split
from kycedge.protocol.envelope.model import FORMAT_VERSION, SUITE_X25519_SHA256_CHACHA20POLY1305, Header
from kycedge.protocol.match import judge

__all__ = ["IngestOutcome", "Receiver", "liveness_passed", "template_aad"]

log = logging.getLogger(__name__)

Status = Literal["accepted", "rejected"]
NO_RECEIPT = "no-receipt"
INTERNAL_ERROR = "internal-error"  # a receiver bug on this input: logged, no receipt


@dataclass(frozen=True)
class IngestOutcome:
    """What became of one envelope.

    ``receipt`` is the signed receipt to send back (None only if no header could be
    parsed); route it to ``receipt_topic`` (``kyc/v1/{tenant}/{device}/receipts``).
    ``duplicate`` is True when this delivery repeated an already recorded message id:
    ``receipt`` is then the first receipt and nothing else happened.
    """

    receipt: bytes | None
    reason: str
    status: Status | None
    message_id: uuid.UUID | None = None
    tenant: str | None = None
    device_id: str | None = None
    score: float | None = None
    threshold: float | None = None
    duplicate: bool = False
    recorded: bool = False
    detail: str = ""

    @property
    def receipt_topic(self) -> str | None:
        if self.receipt is None or self.tenant is None or self.device_id is None:
            return None
        return topics.receipts(self.tenant, self.device_id)


def liveness_passed(lv: Liveness) -> bool:
    """What ``liveness = "required"`` accepts: a device-signed pass of a real method."""
    return lv.passed and lv.method != "none"


def template_aad(message_id: str, tenant: str, device_id: str, model_id: str, model_version: str) -> bytes:
    return "\x00".join(("templates", message_id, tenant, device_id, model_id, model_version)).encode()


@dataclass(frozen=True)
class _Parsed:
    index: int
    envelope: bytes
    header: Header
    env_hash: bytes
    unsupported: str | None = None  # set: a version/suite we do not speak (header read as v1)


@dataclass(frozen=True)
class _Authentic:
    parsed: _Parsed
    opened: Opened


@dataclass
class _Pending:
    index: int
    header: Header
    commit: Commit
    score: float | None
    threshold: float | None
    detail: str


@dataclass
class Receiver:
    """Ingest envelopes. Construct with :meth:`from_config` (or directly, for tests)."""

    config: CarrierConfig
    store: SqlStore
    keys: CarrierKeys
    clock: Callable[[], float] = time.time
    counters: collections.Counter[str] = field(default_factory=collections.Counter)

    @classmethod
    def from_config(cls, config: CarrierConfig, *, clock: Callable[[], float] = time.time) -> Receiver:
        """Load the carrier keys and open (and migrate) the configured storage."""
        keys = CarrierKeys.load(config)
        store = open_store(config.database_target)
        return cls(config=config, store=store, keys=keys, clock=clock)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def registry(self) -> Registry:
        return Registry(self.store, frozenset(self.config.require_hardware_key))

    @property
    def references(self) -> References:
        return References(self.store, self.keys.at_rest_key)

    @property
    def receipt_public_keys(self) -> dict[str, crypto.AnyVerifyKey]:
        """What units need to verify receipts: ``{key id: public key}`` (Ed25519, from a file or an HSM)."""
        return {self.keys.receipt_key_id: self.keys.receipt_public_key}

    # -- public API -----------------------------------------------------------------------

    def ingest(self, envelope: bytes) -> bytes | None:
        """One envelope → its signed receipt (None if not even a header could be parsed)."""
        return self.handle(envelope).receipt

    def handle(self, envelope: bytes) -> IngestOutcome:
        return self.handle_batch([envelope])[0]

    def handle_batch(self, envelopes: Sequence[bytes]) -> list[IngestOutcome]:
        """Ingest several envelopes with ONE storage transaction (one fsync).

        Stages run over the whole batch, so storage is asked once per batch, not per
        envelope: parse every header; look up all their message ids and enrolments (two
        statements); open and verify each; look up all references (one statement); decide
        and sign each; record all (one transaction). Receipts are returned only after that
        transaction committed, so a receipt the unit acts on is always backed by durable
        state (more than ``batch_max`` pending envelopes take several transactions).
        Raises CarrierError only if the storage fails: acknowledge nothing of the batch;
        delivering it again is safe, since whatever was recorded answers with its first
        receipt.
        """
        outcomes: list[IngestOutcome | None] = [None] * len(envelopes)
        now_ms = int(self.clock() * 1000)

        def guarded(i: int, stage: Callable[[], _Stage]) -> _Stage | None:
            try:
                res = stage()
            except CarrierError:
                raise  # our storage or registry failed: nothing may be acknowledged
            except Exception as e:  # a bug must not turn one input into a dead consumer
                name = getattr(getattr(stage, "func", stage), "__name__", "?")
                log.exception("receiver: internal error in %s", name)
                res = IngestOutcome(None, INTERNAL_ERROR, None,
                                    detail=f"internal error: {type(e).__name__}: {e}")
            if isinstance(res, IngestOutcome):
                outcomes[i] = res
                return None
            return res

        heads: list[_Parsed] = []
        for i, env in enumerate(envelopes):
            if isinstance(r := guarded(i, partial(_parse, i, env, self.config)), _Parsed):
                heads.append(r)
        receipts = self.store.find_receipts([str(p.header.message_id) for p in heads])
        devices = self.store.get_devices([_device_key(p.header) for p in heads])
        authentic: list[_Authentic] = []
        for p in heads:
            if isinstance(r := guarded(p.index, partial(self._open, p, receipts, devices)), _Authentic):
                authentic.append(r)
        refs = self.references.get_many([(a.parsed.header.tenant, a.opened.payload.reference)
                                         for a in authentic])
        todo: list[_Pending] = []
        for a in authentic:
            if isinstance(r := guarded(a.parsed.index, partial(self._decide, a, refs, now_ms)), _Pending):
                todo.append(r)
        for start in range(0, len(todo), self.config.batch_max):
            self._commit(todo[start : start + self.config.batch_max], outcomes)
        done = [o for o in outcomes if o is not None]
        assert len(done) == len(envelopes)
        for o in done:
            counted = o.receipt is not None or o.reason == INTERNAL_ERROR
            self.counters[o.reason if counted else NO_RECEIPT] += 1
            if o.duplicate:
                self.counters["duplicate"] += 1
        return done

    def receipt_object(self, outcome: IngestOutcome) -> Receipt | None:
        """The parsed, verified :class:`Receipt` of an outcome (None if there is no receipt)."""
        if outcome.receipt is None or outcome.device_id is None:
            return None
        return verify_receipt(outcome.receipt, self.receipt_public_keys, expected_device_id=outcome.device_id)

    def purge(self) -> PurgeCounts:
        """Apply the retention policy now (see :mod:`kycedge.carrier.retention`)."""
        from kycedge.carrier.retention import purge

        return purge(self.store, self.config, now_ms=int(self.clock() * 1000))

    # -- stages ---------------------------------------------------------------------------

    def _open(self, p: _Parsed, receipts: Mapping[str, StoredReceipt],
              devices: Mapping[tuple[str, str, str], DeviceRecord]) -> _Authentic | IngestOutcome:
        header = p.header
        if p.unsupported is not None:
            return self._reject(header, "unsupported-version", p.unsupported)
        first = receipts.get(str(header.message_id))
        if first is not None and first.envelope_hash == p.env_hash:
            status: Status = "accepted" if first.status == "accepted" else "rejected"
            return IngestOutcome(first.receipt, first.reason, status, header.message_id, header.tenant,
                           header.device_id, duplicate=True, recorded=True,
                           detail="same bytes as an already recorded delivery: first receipt returned")
        device = devices.get(_device_key(header))
        if device is None:
            return self._reject(
                header, "unknown-device",
                f"no enrolment for {header.tenant}/{header.device_id} key {header.device_key_id}",
            )
        if device.status != "active":
            return self._reject(header, "revoked-device",
                                f"{header.tenant}/{header.device_id} key {header.device_key_id} is revoked")
        if header.tenant in self.config.require_hardware_key and device.key_protection != "tpm":
            return self._reject(header, "revoked-device",
                                f"{header.tenant} requires hardware keys (require_hardware_key); "
                                f"{header.device_id} key {header.device_key_id} is {device.key_protection}")
        if header.key_protection != device.key_protection:
            return self._reject(header, "bad-signature",
                                f"header claims a {header.key_protection} key, "
                                f"enrolled as {device.key_protection}")
        try:
            verify_key = crypto.verify_key_from_raw(device.public_key, _alg(device.signature_alg))
            opened = open_envelope(p.envelope, device_public_key=verify_key,
                                   carrier_private_keys=self.keys.hpke)
        except EnvelopeError as e:
            return self._reject(header, e.reason, e.message)
        except KeyStoreError as e:  # a corrupt registry row: not the sender's fault
            raise CarrierError(f"registry: enrolled key of {header.device_id} unusable: {e.message}",
                               reason="registry-error") from e
        return _Authentic(p, opened)

    def _decide(self, a: _Authentic, refs: Mapping[tuple[str, str], Reference], now_ms: int) -> _Pending:
        index, header, env_hash, opened = a.parsed.index, a.parsed.header, a.parsed.env_hash, a.opened
        p = opened.payload
        mid = str(header.message_id)

        def commit(reason: str, receipt: bytes, *, consumes: bool, template: StoredTemplate | None = None,
                   status: str = "rejected") -> Commit:
            return Commit(
                message_id=mid, tenant=header.tenant, device_id=header.device_id,
                key_id=header.device_key_id, seq=header.sequence if consumes else None,
                envelope_hash=env_hash, digest=opened.digest, prev_digest=p.prev_digest, status=status,
                reason=reason, receipt=receipt, received_at_ms=now_ms, template=template,
            )

        age_ms = now_ms - p.captured_at_ms
        if age_ms > self.config.replay_window_s * 1000 or -age_ms > self.config.future_skew_s * 1000:
            detail = (f"capture time {p.captured_at_ms} is {age_ms / 1000:.0f} s from now; expected within "
                      f"[-{self.config.future_skew_s}, {self.config.replay_window_s}] s")
            return _Pending(index, header, commit("stale", self._sign(header, "stale"), consumes=False),
                            None, None, detail)
        if self.config.liveness_policy(header.tenant) == "required" and not liveness_passed(p.liveness):
            lv = p.liveness
            detail = (f"tenant {header.tenant} requires a passed liveness challenge; the envelope says "
                      f"method {lv.method!r}, passed {lv.passed}"
                      + (f", outcome {lv.outcome!r}" if lv.challenge else ""))
            return _Pending(index, header, commit("liveness-not-passed",
                                                  self._sign(header, "liveness-not-passed"), consumes=False),
                            None, None, detail)
        model = (p.template.model_id, p.template.model_version)
        ref = refs.get((header.tenant, p.reference))
        score: float | None = None
        threshold: float | None = None
        if ref is None:
            reason, detail, ref_model = "no-reference", f"no reference enrolled for {p.reference}", None
        else:
            d = judge(p.template.to_array(), model, ref.template, (ref.model_id, ref.model_version),
                       ref.threshold)
            ref_model = (ref.model_id, ref.model_version)
            reason, detail = d.outcome, d.detail
            if d.outcome == "malformed":  # wrong dimension or zero vector: authenticated, final
                return _Pending(index, header,
                                commit("bad-template", self._sign(header, "bad-template"), consumes=False),
                                None, None, detail)
            score, threshold = d.score, d.threshold
        receipt = self._sign(header, reason, score=score, threshold=threshold, model=ref_model)
        ct = crypto.encrypt_at_rest(
            self.keys.at_rest_key, p.template.vector,
            template_aad(mid, header.tenant, header.device_id, *model),
        )
        stored = StoredTemplate(reference=p.reference, model_id=model[0], model_version=model[1],
                                captured_at_ms=p.captured_at_ms, template_ct=ct)
        accepted = commit(reason, receipt, consumes=True, template=stored, status="accepted")
        return _Pending(index, header, accepted, score, threshold, detail)

    def _commit(self, batch: list[_Pending], outcomes: list[IngestOutcome | None]) -> None:
        by_mid = {p.commit.message_id: p for p in batch}

        def on_conflict(c: Commit, why: str) -> Commit:
            h = by_mid[c.message_id].header
            by_mid[c.message_id].detail = why
            return replace(c, seq=None, template=None, status="rejected", reason="replayed",
                           receipt=self._sign(h, "replayed"))

        recorded = self.store.record_batch([p.commit for p in batch], on_conflict)
        for p, r in zip(batch, recorded, strict=True):
            h = p.header
            scored = r.first and r.reason in ("match", "no-match")
            outcomes[p.index] = IngestOutcome(
                receipt=r.receipt, reason=r.reason,
                status="accepted" if r.status == "accepted" else "rejected",
                message_id=h.message_id, tenant=h.tenant, device_id=h.device_id,
                score=p.score if scored else None, threshold=p.threshold if scored else None,
                duplicate=not r.first, recorded=True,
                detail=p.detail if r.first else "message id already recorded: first receipt returned",
            )
            if r.first and r.reason in ("replayed", "stale"):
                log.warning("%s %s/%s message %s: %s", r.reason, h.tenant, h.device_id, h.message_id,
                            p.detail)

    # -- receipts -------------------------------------------------------------------------

    def _sign(self, header: Header, reason: str, *, score: float | None = None,
              threshold: float | None = None, model: tuple[str, str] | None = None) -> bytes:
        return sign_receipt(
            self.keys.receipt_key, message_id=header.message_id, tenant=header.tenant,
            device_id=header.device_id, reason=reason, score=score, threshold=threshold,
            model_id=model[0] if model else None, model_version=model[1] if model else None,
            issued_at_ms=int(self.clock() * 1000),
        )

    def _reject(self, header: Header, reason: str, detail: str) -> IngestOutcome:
        """A pre-authentication rejection: signed, returned, never recorded."""
        return IngestOutcome(self._sign(header, reason), reason, "rejected", header.message_id, header.tenant,
                       header.device_id, detail=detail)


def _route_unsupported(envelope: bytes) -> Header | None:
    """The routing fields of an envelope of an unknown version/suite, read with the
    version-1 layout (magic, version and suite come first, the routing fields follow
    at fixed offsets): enough to answer ``unsupported-version`` to the right unit.
    None if even that layout does not parse."""
    patched = envelope[:4] + bytes([FORMAT_VERSION, SUITE_X25519_SHA256_CHACHA20POLY1305]) + envelope[6:]
    try:
        return split(patched)[0]
    except EnvelopeError:
        return None


_Stage = Union[_Parsed, _Authentic, "_Pending", IngestOutcome]


def _alg(value: str) -> crypto.SignatureAlgorithm:
    if value == "es256":
        return "es256"
    if value == "ed25519":
        return "ed25519"
    raise KeyStoreError(f"signature algorithm: expected ed25519 or es256, got {value!r:.20}")


def _device_key(header: Header) -> tuple[str, str, str]:
    return (header.tenant, header.device_id, header.device_key_id)


def _parse(index: int, envelope: bytes, config: CarrierConfig) -> _Parsed | IngestOutcome:
    """Size limit, then the clear header (no keys, no crypto)."""
    raw: object = envelope
    if not isinstance(raw, bytes | bytearray | memoryview):
        return IngestOutcome(None, "malformed", None, detail=f"expected bytes, got {type(raw).__name__}")
    data = bytes(raw)
    limit = config.max_envelope_bytes
    if len(data) > limit:
        # Too long to read: do not even parse the header.
        return IngestOutcome(None, "malformed", None,
                             detail=f"expected at most {limit} bytes, got {len(data)}")
    try:
        header = peek_header(data)
    except EnvelopeError as e:
        routable = _route_unsupported(data) if e.reason == "unsupported-version" else None
        if routable is None:
            return IngestOutcome(None, e.reason, None, detail=e.message)
        return _Parsed(index, data, routable, b"", unsupported=e.message)
    return _Parsed(index, data, header, hashlib.sha256(data).digest())
