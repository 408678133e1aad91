"""Property tests: the receiver never raises on arbitrary input, and no alteration of a
sealed envelope is ever accepted. (SQLite; the storage paths are shared with PostgreSQL.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kycedge.carrier.receiver import IngestOutcome
from kycedge.protocol.envelope import verify_receipt

from .helpers import World, make_world, near, unit_vector

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp: Path = tmp_path_factory.mktemp("props")
    w = make_world(tmp, str(tmp / "carrier.db"))
    w.add_reference(unit_vector(1))
    try:
        yield w
    finally:
        w.receiver.close()


@pytest.fixture(scope="module")
def sample(world: World) -> tuple[bytes, IngestOutcome]:
    env = world.unit("unit-prop").seal(near(unit_vector(1), 0.9))
    first = world.receiver.handle(env)
    assert first.reason == "match"
    return env, first


def _check(world: World, out: IngestOutcome) -> None:
    if out.receipt is not None:
        assert out.device_id is not None
        r = verify_receipt(out.receipt, world.receiver.receipt_public_keys, expected_device_id=out.device_id)
        assert r.reason == out.reason


@SETTINGS
@given(data=st.binary(max_size=20_000))
def test_never_raises_on_arbitrary_bytes(world: World, data: bytes) -> None:
    out = world.receiver.handle(data)
    assert out.status != "accepted"
    _check(world, out)


@SETTINGS
@given(prefix_len=st.integers(0, 200), tail=st.binary(max_size=2000))
def test_never_raises_on_valid_prefix_plus_garbage(world: World, sample: tuple[bytes, IngestOutcome],
                                                     prefix_len: int, tail: bytes) -> None:
    env = sample[0]
    data = env[:prefix_len] + tail
    out = world.receiver.handle(data)
    if data != env:
        assert out.status != "accepted"
    _check(world, out)


@SETTINGS
@given(st.data())
def test_every_bit_flip_truncation_or_extension_is_rejected(world: World, sample: tuple[bytes, IngestOutcome],
                                                             data: st.DataObject) -> None:
    env, first = sample
    kind = data.draw(st.sampled_from(["flip", "truncate", "extend"]))
    if kind == "flip":
        pos = data.draw(st.integers(0, len(env) * 8 - 1))
        mutated = bytearray(env)
        mutated[pos // 8] ^= 1 << (pos % 8)
        altered = bytes(mutated)
    elif kind == "truncate":
        altered = env[: data.draw(st.integers(0, len(env) - 1))]
    else:
        altered = env + data.draw(st.binary(min_size=1, max_size=64))
    out = world.receiver.handle(altered)
    assert out.status != "accepted"
    assert out.receipt != first.receipt
    _check(world, out)
    # and the original still answers with its first receipt
    assert world.receiver.handle(env).receipt == first.receipt
