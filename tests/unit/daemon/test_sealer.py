"""The device sealer: real envelopes, a durable chain (sequence, prev digest) across restarts."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from kycedge import crypto
from kycedge.core.errors import KeyStoreError
from kycedge.protocol.envelope import GENESIS_DIGEST, CarrierKey, ConsentRecord, open_envelope
from kycedge.unit.identity import init_identity
from kycedge.unit.sealer import CHAIN_FILE, DeviceSealer
from kycedge.unit.session import Capture, Consent


def capture(i: int) -> Capture:
    t = np.random.default_rng(i).standard_normal(128).astype(np.float32)
    return Capture(template=t / np.linalg.norm(t), registration_ref=f"registration-ref-{i:04d}",
                   model_id="sface", model_version="1", captured_at=1_790_000_000.0 + i,
                   quality={"sharpness": 40.0, "eye_distance_px": 60.0, "Bad Key": 1.0})


def test_chain_survives_a_restart_and_envelopes_open(tmp_path: Path) -> None:
    ident, _ = init_identity(tmp_path / "state")
    kem = crypto.generate_kem_key()
    ck = CarrierKey.from_public_key(kem.public_key())
    seal1 = DeviceSealer(ident, [ck], tenant="acme", device_id="u1", state_dir=tmp_path / "state")
    a, b = seal1(capture(1)), seal1(capture(2))
    assert stat.S_IMODE(os.stat(tmp_path / "state" / CHAIN_FILE).st_mode) == 0o600
    seal2 = DeviceSealer(ident, [ck], tenant="acme", device_id="u1", state_dir=tmp_path / "state")
    c = seal2(capture(3))  # a new process continues the chain
    opened = [open_envelope(x.envelope, device_public_key=ident.signer.public_key(),
                            carrier_private_keys={ck.key_id: kem}) for x in (a, b, c)]
    assert [o.header.sequence for o in opened] == [1, 2, 3]
    assert opened[0].payload.prev_digest == GENESIS_DIGEST
    assert opened[1].payload.prev_digest == opened[0].digest
    assert opened[2].payload.prev_digest == opened[1].digest
    assert opened[2].payload.reference == "registration-ref-0003"
    assert dict(opened[0].payload.quality) == {"eye_distance_px": 60.0, "sharpness": 40.0}
    assert opened[0].payload.liveness.method == "none"
    assert opened[0].payload.liveness.passed is False
    assert [str(o.header.message_id) for o in opened] == [a.message_id, b.message_id, c.message_id]
    vec = np.frombuffer(opened[0].payload.template.vector, "<f4")
    assert np.allclose(vec, capture(1).template)
    assert opened[0].payload.consent is None  # no consent given to this capture


def test_the_accepted_consent_is_sealed_into_the_payload(tmp_path: Path) -> None:
    ident, _ = init_identity(tmp_path / "state")
    kem = crypto.generate_kem_key()
    ck = CarrierKey.from_public_key(kem.public_key())
    sealer = DeviceSealer(ident, [ck], tenant="acme", device_id="u1", state_dir=tmp_path / "state")
    cap = dataclasses.replace(capture(1), consent=Consent("2026-12-01.1", True, answered_at=1_790_000_000.5))
    opened = open_envelope(sealer(cap).envelope, device_public_key=ident.signer.public_key(),
                           carrier_private_keys={ck.key_id: kem})
    want = ConsentRecord(text_version="2026-12-01.1", accepted_at_ms=1_790_000_000_500)
    assert opened.payload.consent == want


def test_broken_chain_state_refuses_to_start(tmp_path: Path) -> None:
    ident, _ = init_identity(tmp_path / "state")
    ck = CarrierKey.from_public_key(crypto.generate_kem_key().public_key())
    (tmp_path / "state" / CHAIN_FILE).write_text("{not json")
    with pytest.raises(KeyStoreError, match="refusing to restart the chain") as e:
        DeviceSealer(ident, [ck], tenant="acme", device_id="u1", state_dir=tmp_path / "state")
    assert e.value.reason == "bad-chain-state"
    with pytest.raises(KeyStoreError, match="expected at least one carrier HPKE key"):
        DeviceSealer(ident, [], tenant="acme", device_id="u1", state_dir=tmp_path / "state")


def test_a_full_disk_ends_the_session_with_storage_full_and_loses_nothing(small_fs) -> None:  # type: ignore[no-untyped-def]
    """Issue 10 item 12: the session ended with internal-error and queue.last_error was empty
    (the sealer's chain write hit ENOSPC first). Real sealer and outbox on a full 1 MiB tmpfs."""
    from kycedge.unit.capture.fake import FakeCamera
    from kycedge.unit.outbox import Outbox
    from kycedge.unit.session import SessionConfig, SessionManager

    from .fakes import GOOD, FakeAnalyzer, frame

    state = small_fs.root / "state"
    ident, _ = init_identity(state)
    ck = CarrierKey.from_public_key(crypto.generate_kem_key().public_key())
    sealer = DeviceSealer(ident, [ck], tenant="acme", device_id="u1", state_dir=state)
    ob = Outbox(state / "outbox.sqlite")
    cfg = SessionConfig(timeout_s=5.0, settle_s=0.0, best_of=1, receipt_wait_s=0.0)
    m = SessionManager(FakeCamera([frame(GOOD)] * 50), FakeAnalyzer(), sealer, ob, cfg)
    first = list(m.start("registration-ref-0001").stream(poll_s=0.05))
    assert any(e["event"] == "queued" for e in first)
    small_fs.fill()
    evs = list(m.start("registration-ref-0002").stream(poll_s=0.05))
    assert evs[-1]["event"] == "failed"
    assert evs[-1]["reason"] == "storage-full", evs[-1]
    assert "free space" in evs[-1]["message"]
    assert ob.stats().last_error.startswith("storage-full")
    assert len(ob.message_ids()) == 1  # the first registration is still queued
    small_fs.free()
    evs = list(m.start("registration-ref-0003").stream(poll_s=0.05))
    assert any(e["event"] == "queued" for e in evs)
    assert len(ob.message_ids()) == 2
    assert ob.stats().last_error == ""
    ob.close()
