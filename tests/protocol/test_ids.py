"""protocol.ids: one grammar per identifier, shared by unit, carrier and fleet."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kycedge.core.errors import IdError
from kycedge.protocol import ids


@pytest.mark.parametrize("ref", [
    "id-19850101-1234-x",        # a 12-digit ID number with separators inside
    "ref_1234-5678-9xyzabcdefgh",  # 9 digits broken up by '-'
    "customer123456789abc",      # 9 digits in a row
    "short",                     # too short
    "1abcdefghijklmnopq",        # must start with a letter
    "abcdefghijklmnop qr",       # space
    "a" * 65,                    # too long
])
def test_reference_refuses_id_numbers_and_malformed(ref: str) -> None:
    with pytest.raises(IdError) as e:
        ids.check_reference(ref)
    assert e.value.reason == "bad-reference"


@pytest.mark.parametrize("ref", ["soak-ref-customer-000001", "REG-registration-0001", "r" + "A" * 22,
                                 "ref-2026-12-01-counter-7"])
def test_reference_accepts_opaque_ids(ref: str) -> None:
    assert ids.check_reference(ref) == ref


@given(st.integers(0, 2**48 - 1), st.binary(min_size=10, max_size=10))
def test_message_id_text_round_trip(ms: int, rnd: bytes) -> None:
    mid = ids.new_message_id(now_ms=ms, random_bytes=rnd)
    text = ids.check_message_id_text(str(mid))
    assert ids.check_message_id(uuid.UUID(text)) == mid
    assert ids.message_id_time_ms(mid) == ms


@pytest.mark.parametrize("bad", ["m0", "", str(uuid.uuid4()), str(uuid.uuid7() if hasattr(uuid, "uuid7") else
                                 ids.new_message_id()).upper(), "x" * 36])
def test_message_id_text_is_canonical_uuid7(bad: str) -> None:
    with pytest.raises(IdError):
        ids.check_message_id_text(bad)


def test_new_references_are_valid() -> None:
    for _ in range(200):
        ids.check_reference(ids.new_registration_reference())


@given(st.from_regex(ids.TENANT_RE, fullmatch=True), st.from_regex(ids.DEVICE_ID_RE, fullmatch=True))
def test_device_common_name_round_trip(tenant: str, device: str) -> None:
    assert ids.parse_device_common_name(ids.device_common_name(tenant, device)) == (tenant, device)


@pytest.mark.parametrize("cn", ["acme", "acme/dev/x", "ACME/dev", "acme/+", "acme/#", "/dev", "acme/"])
def test_device_common_name_refused(cn: str) -> None:
    with pytest.raises(IdError):
        ids.parse_device_common_name(cn)


@pytest.mark.parametrize(("check", "bad"), [
    (ids.check_tenant, "Acme"), (ids.check_tenant, "a" * 33), (ids.check_tenant, "-acme"),
    (ids.check_device_id, ".hidden"), (ids.check_device_id, "a/b"), (ids.check_device_id, "a+b"),
    (ids.check_key_id, "0" * 31), (ids.check_service_name, "$SYS"),
])
def test_grammars_refuse(check: object, bad: str) -> None:
    with pytest.raises(IdError, match="expected text matching"):
        check(bad)  # type: ignore[operator]
