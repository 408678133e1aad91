"""Receiver behaviour, every reason code, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kycedge import crypto
from kycedge.carrier.keyring import init_keys
from kycedge.carrier.receiver import IngestOutcome, template_aad
from kycedge.protocol.envelope import verify_receipt
from kycedge.protocol.envelope.header import hpke_info, split

from .helpers import MODEL, NOW_MS, REF, TENANT, THRESHOLD, World, make_world, near, unit_vector

DAY_MS = 86_400_000


@pytest.fixture
def world(tmp_path: Path, db_target: str) -> Iterator[World]:
    w = make_world(tmp_path, db_target)
    try:
        yield w
    finally:
        w.receiver.close()


def check_receipt(w: World, out: IngestOutcome, device_id: str = "unit-0001") -> None:
    """The receipt verifies under the carrier's receipt key and says what the outcome says."""
    assert out.receipt is not None
    r = verify_receipt(out.receipt, w.receiver.receipt_public_keys, expected_device_id=device_id,
                       expected_tenant=TENANT)
    assert r.message_id == out.message_id
    assert r.reason == out.reason
    assert r.status == out.status


def test_match_is_accepted_with_score_and_threshold(world: World) -> None:
    ref = unit_vector(1)
    world.add_reference(ref)
    unit = world.unit()
    out = world.receiver.handle(unit.seal(near(ref, 0.8)))
    assert (out.status, out.reason) == ("accepted", "match")
    assert out.score == pytest.approx(0.8, abs=1e-4)
    assert out.threshold == pytest.approx(THRESHOLD)
    check_receipt(world, out)
    r = world.receiver.receipt_object(out)
    assert r is not None
    assert (r.score, r.threshold, r.model_id, r.model_version) == (out.score, out.threshold, *MODEL)
    assert out.receipt_topic == f"kyc/v1/{TENANT}/unit-0001/receipts"


def test_no_match_is_decided_by_the_carrier(world: World) -> None:
    ref = unit_vector(1)
    world.add_reference(ref)
    out = world.receiver.handle(world.unit().seal(near(ref, 0.2)))
    assert (out.status, out.reason) == ("accepted", "no-match")
    assert out.score == pytest.approx(0.2, abs=1e-4)
    check_receipt(world, out)


def test_no_reference(world: World) -> None:
    out = world.receiver.handle(world.unit().seal(reference="rNobodyEnrolledThis"))
    assert out.reason == "no-reference"
    assert out.score is None
    check_receipt(world, out)


def test_model_mismatch(world: World) -> None:
    world.add_reference(unit_vector(1), model=("sface-2021dec-int8", "0.9.0"))
    out = world.receiver.handle(world.unit().seal(unit_vector(1)))
    assert out.reason == "model-mismatch"
    assert out.score is None
    r = world.receiver.receipt_object(out)
    assert r is not None
    assert (r.model_id, r.model_version) == ("sface-2021dec-int8", "0.9.0")  # what the carrier expects


def test_wrong_dimension_for_the_reference_model_is_a_final_bad_template(world: World) -> None:
    """Authenticated, then refused: a reason of its own (``malformed`` is a pre-authentication
    reason, which the unit must not take as the end of the envelope's life)."""
    world.add_reference(unit_vector(1, dim=128))
    out = world.receiver.handle(world.unit().seal(unit_vector(2, dim=64)))
    assert (out.status, out.reason, out.recorded) == ("rejected", "bad-template", True)
    check_receipt(world, out)
    r = world.receiver.receipt_object(out)
    assert r is not None
    assert r.final


def test_receipt_final_exactly_when_the_carrier_recorded_it(world: World) -> None:
    """The receipt's own reason tells the unit whether the carrier authenticated the envelope."""
    ref = unit_vector(3)
    world.add_reference(ref)
    u1, u2 = world.unit("unit-a"), world.unit("unit-b", enroll=False)
    good = u1.seal(near(ref, 0.9))
    forged = good[:84] + bytes(len(good) - 84)  # the genuine clear header, random-ish ciphertext
    outs = world.receiver.handle_batch([forged, u2.seal(), good, good,
                                        u1.seal(captured_at_ms=1_600_000_000_000)])
    got = [(o.reason, o.recorded, world.receiver.receipt_object(o).final) for o in outs]  # type: ignore[union-attr]
    assert got == [("undecryptable", False, False), ("unknown-device", False, False),
                   ("match", True, True), ("match", True, True), ("stale", True, True)]


def test_unknown_device_is_rejected_and_not_pinned(world: World) -> None:
    unit = world.unit(enroll=False)
    env = unit.seal()
    out = world.receiver.handle(env)
    assert (out.status, out.reason, out.recorded) == ("rejected", "unknown-device", False)
    check_receipt(world, out)
    # The rejection was not recorded: once enrolled, the same envelope is processed.
    world.receiver.registry.enroll(TENANT, unit.device_id, crypto.public_key_bytes(unit.key.public_key()))
    assert world.receiver.handle(env).reason == "no-reference"


def test_other_tenant_is_unknown(world: World) -> None:
    unit = world.unit()
    unit.tenant = "other"
    assert world.receiver.handle(unit.seal()).reason == "unknown-device"


def test_revoked_device(world: World) -> None:
    unit = world.unit()
    first_env = unit.seal()
    first = world.receiver.handle(first_env)
    assert first.reason == "no-reference"
    world.receiver.registry.revoke(TENANT, unit.device_id)
    out = world.receiver.handle(unit.seal())
    assert (out.status, out.reason) == ("rejected", "revoked-device")
    check_receipt(world, out)
    # A redelivery of a message recorded before the revocation still gets its first receipt.
    again = world.receiver.handle(first_env)
    assert again.duplicate
    assert again.receipt == first.receipt


def _reseal(env: bytes, w: World, tamper_signed: bool) -> bytes:
    """Decrypt with the carrier key, flip a signature byte, encrypt again under the same header."""
    header, header_bytes, part = split(env)
    key = w.receiver.keys.hpke[header.carrier_key_id]
    signed = bytearray(crypto.hpke_open(key, part, info=hpke_info(header_bytes)))
    if tamper_signed:
        signed[-1] ^= 0x01  # last byte of the Ed25519 signature
    return header_bytes + crypto.hpke_seal(key.public_key(), bytes(signed), info=hpke_info(header_bytes))


def test_bad_signature(world: World) -> None:
    unit = world.unit()
    out = world.receiver.handle(_reseal(unit.seal(), world, tamper_signed=True))
    assert (out.status, out.reason) == ("rejected", "bad-signature")
    check_receipt(world, out)


def test_undecryptable_ciphertext_bit_flip(world: World) -> None:
    env = bytearray(world.unit().seal())
    env[-20] ^= 0x40
    out = world.receiver.handle(bytes(env))
    assert (out.status, out.reason) == ("rejected", "undecryptable")
    check_receipt(world, out)


def test_undecryptable_unknown_carrier_key(world: World) -> None:
    from kycedge.protocol.envelope import CarrierKey

    unit = world.unit()
    unit.carrier_key = CarrierKey.from_public_key(crypto.generate_kem_key().public_key())
    out = world.receiver.handle(unit.seal())
    assert out.reason == "undecryptable"
    check_receipt(world, out)


def test_unparsable_bytes_get_no_receipt(world: World) -> None:
    for data in (b"", b"KYCE", b"\x00" * 100, b"garbage" * 10):
        out = world.receiver.handle(data)
        assert out.receipt is None
        assert out.reason == "malformed"
        assert out.receipt_topic is None
    assert world.receiver.counters["no-receipt"] == 4


def test_oversized_envelope_is_refused_unread(world: World) -> None:
    env = world.unit().seal()
    out = world.receiver.handle(env + b"\x00" * world.config.max_envelope_bytes)
    assert out.receipt is None
    assert "expected at most" in out.detail


def test_unsupported_version_is_answered_when_the_header_is_readable(world: World) -> None:
    env = bytearray(world.unit().seal())
    env[4] = 3  # an unknown format version byte
    out = world.receiver.handle(bytes(env))
    assert (out.status, out.reason) == ("rejected", "unsupported-version")
    check_receipt(world, out)


def test_stale_and_future_captures(world: World) -> None:
    unit = world.unit()
    window = world.config.replay_window_s * 1000
    old = unit.seal(captured_at_ms=NOW_MS - window - 1000)
    out = world.receiver.handle(old)
    assert (out.status, out.reason) == ("rejected", "stale")
    check_receipt(world, out)
    future = unit.seal(captured_at_ms=NOW_MS + world.config.future_skew_s * 1000 + 1000)
    assert world.receiver.handle(future).reason == "stale"
    edge = unit.seal(captured_at_ms=NOW_MS - window + 1000)
    assert world.receiver.handle(edge).reason == "no-reference"
    # a stale outcome is recorded: redelivery returns the first receipt
    again = world.receiver.handle(old)
    assert again.duplicate
    assert again.receipt == out.receipt


def test_second_delivery_returns_the_first_receipt_byte_for_byte(world: World) -> None:
    world.add_reference(unit_vector(1))
    env = world.unit().seal(near(unit_vector(1), 0.9))
    first = world.receiver.handle(env)
    world.clock.ms += 60_000  # a later receipt would carry a later issued_at_ms
    second = world.receiver.handle(env)
    assert not first.duplicate
    assert second.duplicate
    assert second.receipt == first.receipt
    assert second.reason == "match"
    counts = world.receiver.store.counts()
    assert (counts["receipts"], counts["templates"], counts["sequences"]) == (1, 1, 1)


def test_same_message_id_in_different_bytes_gets_the_first_receipt(world: World) -> None:
    """HPKE is randomised: a unit re-sealing the same message gives other bytes, same id."""
    unit = world.unit()
    env = unit.seal()
    resealed = _reseal(env, world, tamper_signed=False)
    assert resealed != env
    first = world.receiver.handle(env)
    second = world.receiver.handle(resealed)
    assert second.duplicate
    assert second.receipt == first.receipt


def test_duplicates_in_one_batch(world: World) -> None:
    env = world.unit().seal()
    a, b = world.receiver.handle_batch([env, env])
    assert a.receipt == b.receipt
    assert [a.duplicate, b.duplicate] == [False, True]


def test_sequence_reuse_is_replayed(world: World) -> None:
    unit = world.unit()
    world.receiver.handle(unit.seal())  # seq 1
    # same sequence, new message id (a cloned unit, or a unit restored from a backup)
    out = world.receiver.handle(unit.seal(seq=1, prev=bytes(32)))
    assert (out.status, out.reason) == ("rejected", "replayed")
    check_receipt(world, out)
    assert world.receiver.store.counts()["templates"] == 1


def test_chain_fork_is_replayed_and_gaps_are_accepted(world: World) -> None:
    unit = world.unit()
    e1, e2, e3 = unit.seal(), unit.seal(), unit.seal()
    # delivered out of order, with a gap at first: all accepted
    assert [world.receiver.handle(e).reason for e in (e3, e1, e2)] == ["no-reference"] * 3
    # sequence 4 claiming envelope 1 as its predecessor: a fork
    forked = unit.seal(seq=4, prev=unit.sent[0].digest)
    assert world.receiver.handle(forked).reason == "replayed"
    assert world.receiver.store.last_sequence(TENANT, unit.device_id, unit.sent[0].header.device_key_id) == 3


def test_carrier_key_rotation_two_keys_active(world: World) -> None:
    unit = world.unit()
    old_key = unit.carrier_key
    init_keys(world.config, rotate=True)
    world.reload_keys()
    assert len(world.receiver.keys.hpke) == 2
    assert world.carrier_key.key_id != old_key.key_id
    assert world.receiver.handle(unit.seal()).reason == "no-reference"  # still to the old key
    unit.carrier_key = world.carrier_key
    out = world.receiver.handle(unit.seal())  # to the new key
    assert out.reason == "no-reference"
    # Once the old key file is removed, envelopes to it are undecryptable.
    for p in world.config.hpke_key_paths():
        if crypto.key_id(crypto.load_kem_private_key(p).public_key()) == old_key.key_id:
            p.unlink()
    world.reload_keys()
    unit.carrier_key = old_key
    assert world.receiver.handle(unit.seal()).reason == "undecryptable"


def test_templates_are_encrypted_at_rest(world: World) -> None:
    vec = unit_vector(7)
    world.add_reference(vec)
    unit = world.unit()
    out = world.receiver.handle(unit.seal(vec))
    assert out.reason == "match"
    row = world.receiver.store.get_template(str(out.message_id))
    assert row is not None
    plain = vec.astype("<f4").tobytes()
    assert plain not in row.template_ct
    assert plain[:16] not in row.template_ct
    aad = template_aad(row.message_id, row.tenant, row.device_id, row.model_id, row.model_version)
    assert crypto.decrypt_at_rest(world.receiver.keys.at_rest_key, row.template_ct, aad) == plain
    with pytest.raises(Exception, match="does not decrypt"):
        crypto.decrypt_at_rest(crypto.generate_at_rest_key(), row.template_ct, aad)
    ref_row = world.receiver.store.get_reference(TENANT, REF)
    assert ref_row is not None
    assert plain not in ref_row.template_ct


def test_rejections_store_no_template(world: World) -> None:
    unit = world.unit()
    world.receiver.handle(unit.seal(captured_at_ms=NOW_MS - 400 * DAY_MS))  # stale
    world.receiver.handle(_reseal(unit.seal(), world, tamper_signed=True))  # bad-signature
    counts = world.receiver.store.counts()
    assert counts["templates"] == 0
    assert counts["receipts"] == 1  # only the authenticated (stale) outcome is recorded


def test_retention_purge(world: World) -> None:
    unit = world.unit()
    env = unit.seal()
    first = world.receiver.handle(env)
    mid = str(first.message_id)
    world.clock.ms += world.config.receipt_retention_s * 1000 + 1000
    counts = world.receiver.purge()
    assert (counts.templates, counts.receipts, counts.sequences) == (0, 1, 1)
    assert world.receiver.store.get_template(mid) is not None  # templates kept longer
    # the dedupe entry is gone, but the replayed envelope is now outside the window
    assert world.receiver.handle(env).reason == "stale"
    world.clock.ms += world.config.template_retention_s * 1000
    assert world.receiver.purge().templates == 1
    assert world.receiver.store.get_template(mid) is None


def test_mixed_batch(world: World) -> None:
    ref = unit_vector(3)
    world.add_reference(ref)
    u1, u2 = world.unit("unit-a"), world.unit("unit-b", enroll=False)
    envs = [u1.seal(near(ref, 0.9)), b"junk", u2.seal(), u1.seal(near(ref, 0.1)),
            u1.seal(captured_at_ms=1_600_000_000_000)]
    outs = world.receiver.handle_batch(envs)
    assert [o.reason for o in outs] == ["match", "malformed", "unknown-device", "no-match", "stale"]
    assert [o.receipt is None for o in outs] == [False, True, False, False, False]
    assert [o.device_id for o in outs] == ["unit-a", None, "unit-b", "unit-a", "unit-a"]


def test_a_bug_on_one_input_does_not_kill_the_batch(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    import kycedge.carrier.receiver as receiver_mod

    good = world.unit().seal()
    real = receiver_mod.peek_header

    def flaky(data: bytes):  # type: ignore[no-untyped-def]
        if data == b"poison":
            raise RuntimeError("boom")
        return real(data)

    monkeypatch.setattr(receiver_mod, "peek_header", flaky)
    outs = world.receiver.handle_batch([b"poison", good])
    assert [o.reason for o in outs] == ["internal-error", "no-reference"]
    assert outs[0].receipt is None
    assert world.receiver.counters["internal-error"] == 1


def test_storage_failure_raises_and_records_nothing(world: World) -> None:
    from kycedge.core.errors import CarrierError

    env = world.unit().seal()
    world.receiver.store.close()
    with pytest.raises(CarrierError):
        world.receiver.handle(env)


def test_several_receivers_on_one_database(world: World, db_target: str) -> None:
    """Shared subscription: the same messages reach several receiver processes at once."""
    import threading

    from kycedge.carrier.receiver import Receiver

    units = [world.unit(f"unit-{i}") for i in range(3)]
    envs = [u.seal() for _ in range(8) for u in units]
    others = [Receiver.from_config(world.config, clock=world.clock) for _ in range(2)]
    receivers = [world.receiver, *others]
    results: list[list[IngestOutcome]] = [[] for _ in receivers]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(receivers))

    def consume(k: int) -> None:
        try:
            barrier.wait()
            for i in range(0, len(envs), 4):
                results[k].extend(receivers[k].handle_batch(envs[i : i + 4]))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=consume, args=(k,)) for k in range(len(receivers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for r in others:
        r.close()
    assert not errors, errors
    for i in range(len(envs)):
        receipts = {results[k][i].receipt for k in range(len(receivers))}
        assert len(receipts) == 1  # everyone answered with THE first receipt
        firsts = [not results[k][i].duplicate for k in range(len(receivers))]
        assert sum(firsts) == 1  # exactly one delivery took effect
    assert {o.reason for o in results[0]} == {"no-reference"}
    counts = world.receiver.store.counts()
    assert (counts["receipts"], counts["templates"], counts["sequences"]) == (len(envs),) * 3


def test_header_swap_between_units_is_undecryptable(world: World) -> None:
    a, b = world.unit("unit-a"), world.unit("unit-b")
    ea, eb = a.seal(), b.seal()
    _, ha, _ = split(ea)
    _, _, body_b = split(eb)
    out = world.receiver.handle(ha + body_b)  # unit-a's header on unit-b's ciphertext
    assert (out.reason, out.device_id) == ("undecryptable", "unit-a")
    assert world.receiver.handle(eb).reason == "no-reference"  # the genuine one is unaffected


def test_sequence_and_chain_conflicts_inside_one_batch(world: World) -> None:
    from kycedge.protocol.envelope import new_message_id

    def mid(k: int):  # type: ignore[no-untyped-def]
        # the batch is written in message-id order: make that order explicit
        return new_message_id(now_ms=NOW_MS + k, random_bytes=bytes(10))

    unit = world.unit()
    e1 = unit.seal(message_id=mid(1))  # seq 1
    e2 = unit.seal(message_id=mid(2))  # seq 2, chained to e1
    reuse = unit.seal(seq=2, prev=unit.sent[0].digest, message_id=mid(3))  # another message, sequence 2
    fork = unit.seal(seq=3, prev=bytes(32), message_id=mid(4))  # names a predecessor that is not e2
    outs = world.receiver.handle_batch([e1, e2, reuse, fork])
    assert [o.reason for o in outs] == ["no-reference", "no-reference", "replayed", "replayed"]
    assert world.receiver.store.last_sequence(TENANT, unit.device_id, unit.sent[0].header.device_key_id) == 2
    # each replayed outcome is itself recorded: redelivery gives the same receipt
    assert world.receiver.handle(reuse).receipt == outs[2].receipt
