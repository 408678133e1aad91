"""protocol.status: the one writer and the one parser of status and announce messages."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kycedge.core.errors import MessageError
from kycedge.protocol.status import (
    MAX_STATUS_BYTES,
    OFFLINE,
    Announce,
    QueueState,
    UnitStatus,
    UpdateReport,
    delivery_state,
    parse_announce,
    parse_status,
)

texts = st.text(max_size=40)
nat = st.integers(0, 2**40)
queues = st.one_of(
    st.builds(QueueState, nat, nat, nat, st.none() | st.floats(0, 4e9), st.booleans()),
    st.builds(QueueState, error=st.from_regex(r"[a-z-]{1,20}", fullmatch=True)),
)
updates = st.builds(UpdateReport, texts, texts, nat, texts, texts, st.none() | nat, texts, texts,
                    st.floats(0, 4e9))
statuses = st.builds(UnitStatus, st.sampled_from(["online", "offline"]), st.none() | st.floats(0, 4e9),
                     texts, st.from_regex(r"[a-z]{1,8}", fullmatch=True), texts, st.none() | queues,
                     st.none() | updates)


@given(statuses)
def test_status_round_trip(s: UnitStatus) -> None:
    assert parse_status(s.to_json()) == s


@given(st.builds(Announce, nat, texts, texts))
def test_announce_round_trip(a: Announce) -> None:
    assert parse_announce(a.to_json()) == a


def test_offline_is_the_will() -> None:
    assert parse_status(OFFLINE).state == "offline"
    assert json.loads(OFFLINE) == {"state": "offline"}


@pytest.mark.parametrize("payload", [
    b"offline", b"[]", b"{}", b'{"state": "sleeping"}', b'{"state": "online", "model": []}',
    b'{"state": "online", "queue": {"count": -1}}', b'{"state": "online", "update": {"bundle_version": "3"}}',
    b"\xff", b"[" * 5000, b'{"state": "online", "x": "' + b"y" * MAX_STATUS_BYTES + b'"}',
])
def test_bad_status_refused_with_a_reason(payload: bytes) -> None:
    with pytest.raises(MessageError) as e:
        parse_status(payload)
    assert e.value.reason == "bad-message"


@pytest.mark.parametrize("payload", [b'{"bundle_version": "5"}', b'{"bundle_version": -1}', b"{}",
                                     b'{"bundle_version": true}', b"x" * 5000])
def test_bad_announce_refused(payload: bytes) -> None:
    with pytest.raises(MessageError):
        parse_announce(payload)


def test_unknown_keys_are_kept_for_newer_readers() -> None:
    s = parse_status(b'{"state": "online", "battery": {"condition": "ok"}}')
    assert s.extra["battery"] == {"condition": "ok"}
    assert json.loads(s.to_json())["battery"] == {"condition": "ok"}


def test_delivery_and_held_round_trip_and_bad_values_are_refused() -> None:
    """Issue 10: the status says ``not-enrolled`` (and what is held) in one shape, one parser."""
    s = parse_status(b'{"state": "online", "delivery": "not-enrolled", "queue": {"count": 2, "bytes": 9,'
                     b' "inflight": 0, "full": false, "held": {"unknown-device": 2}, "last_error": ""}}')
    assert s.delivery == "not-enrolled"
    assert s.queue is not None
    assert dict(s.queue.held) == {"unknown-device": 2}
    assert parse_status(s.to_json()) == s
    with pytest.raises(MessageError, match=r"status\.delivery: expected one of ok, not-enrolled"):
        parse_status(b'{"state": "online", "delivery": "everything-fine"}')
    with pytest.raises(MessageError, match=r"status\.queue\.held"):
        parse_status(b'{"state": "online", "queue": {"count": 1, "held": [1]}}')


@pytest.mark.parametrize(("held", "last", "final", "state"), [
    ({}, "", None, "ok"), ({"unknown-device": 1}, "unknown-device", None, "not-enrolled"),
    ({"revoked-device": 1}, "revoked-device", False, "revoked"),
    ({"undecryptable": 3}, "undecryptable", False, "not-delivered"),
    ({"unknown-device": 1}, "unknown-device", True, "ok"),
])
def test_delivery_state(held: dict[str, int], last: str, final: bool | None, state: str) -> None:
    assert delivery_state(held, last, final) == state
