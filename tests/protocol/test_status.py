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
    s = parse_status(b'{"state": "online", "delivery": {"condition": "ok"}}')
    assert s.extra["delivery"] == {"condition": "ok"}
    assert json.loads(s.to_json())["delivery"] == {"condition": "ok"}
