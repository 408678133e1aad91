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


@given(IDS, IDS, IDS, IDS)
def test_unit_identity_is_injective_and_one_pair_of_levels(t1: str, d1: str, t2: str, d2: str) -> None:
    """The unit's client id = certificate CN: two units never share one (ADR 0010)."""
    a, b = topics.unit_identity(t1, d1), topics.unit_identity(t2, d2)
    assert (a == b) == ((t1, d1) == (t2, d2))
    assert a.split("/") == [t1, d1]


@pytest.mark.parametrize(("tenant", "device"), [("a/b", "c"), ("a", "+"), ("", "d"), ("t", "#")])
def test_unit_identity_refuses_what_could_widen_it(tenant: str, device: str) -> None:
    with pytest.raises(TopicError):
        topics.unit_identity(tenant, device)
