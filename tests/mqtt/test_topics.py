"""Topic builders and parsers are pure and refuse anything that could widen a filter."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kycedge.protocol import ids, topics
from kycedge.protocol.topics import DeviceTopic, TopicError

TENANTS = st.from_regex(ids.TENANT_RE, fullmatch=True)
DEVICES = st.from_regex(ids.DEVICE_ID_RE, fullmatch=True)


def test_builders() -> None:
    assert topics.templates("acme", "u-1") == "kyc/v1/acme/u-1/templates"
    assert topics.receipts("acme", "u-1") == "kyc/v1/acme/u-1/receipts"
    assert topics.status("acme", "u-1") == "kyc/v1/acme/u-1/status"
    assert topics.shared_templates_subscription("rx") == "$share/rx/kyc/v1/+/+/templates"
    assert topics.shared_templates_subscription("rx", "acme") == "$share/rx/kyc/v1/acme/+/templates"
    assert topics.fleet_topic("acme", "bundles") == "fleet/v1/acme/bundles"


@pytest.mark.parametrize("bad", ["", "+", "#", "a/b", "$SYS", ".hidden", "a b", "x" * 65, "é", "a\x00"])
def test_unsafe_ids_refused(bad: str) -> None:
    with pytest.raises(TopicError, match="device: expected text matching"):
        topics.templates("acme", bad)


@pytest.mark.parametrize("bad", ["kyc/v1/acme/u1", "kyc/v2/acme/u1/templates", "kyc/v1/acme/u1/other",
                                 "kyc/v1/+/u1/templates", "kyc/v1/acme/u1/templates/x", "", "x"])
def test_parse_refuses(bad: str) -> None:
    with pytest.raises(TopicError):
        topics.parse_device_topic(bad)


@given(TENANTS, DEVICES, st.sampled_from(["templates", "receipts", "status"]))
def test_round_trip(tenant: str, device: str, kind: str) -> None:
    t = topics.device_topic(tenant, device, kind)  # type: ignore[arg-type]
    assert topics.parse_device_topic(t) == DeviceTopic(tenant, device, kind)  # type: ignore[arg-type]
    assert str(topics.parse_device_topic(t).sibling("receipts")) == topics.receipts(tenant, device)


@given(st.text(max_size=80))
def test_parser_never_crashes(s: str) -> None:
    with contextlib.suppress(TopicError):
        topics.parse_device_topic(s)

