"""Request body limits: depth, number size, duplicate keys, size; never anything but BodyError."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kycedge.unit.api.jsonbody import MAX_BODY_BYTES, BodyError, parse_object


@pytest.mark.parametrize(("raw", "reason"), [
    (b"[" * 2000 + b"]" * 2000, "too-deep"),
    (b'{"a":' * 9 + b"1" + b"}" * 9, "too-deep"),
    (b'{"n": ' + b"9" * 3000 + b"}", "number-too-long"),
    (b'{"n": 1.' + b"5" * 40 + b"}", "number-too-long"),
    (b'{"ref": "a", "ref": "b"}', "duplicate-key"),
    (b'{"x": {"k": 1, "k": 2}}', "duplicate-key"),
    (b'{"n": NaN}', "bad-number"),
    (b'{"n": -Infinity}', "bad-number"),
    (b"x" * (MAX_BODY_BYTES + 1), "body-too-large"),
    (b"\xff\xfe", "bad-request"),
    (b"[1, 2]", "bad-request"),
    (b"{", "bad-request"),
])
def test_refusals_name_the_rule(raw: bytes, reason: str) -> None:
    with pytest.raises(BodyError) as e:
        parse_object(raw)
    assert e.value.reason == reason
    assert e.value.message


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    assert parse_object(json.dumps({"ref": "[" * 100 + '\\"{'}).encode())["ref"].startswith("[[")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**15, 10**15) | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=4))
def test_ordinary_objects_round_trip(obj: dict[str, object]) -> None:
    raw = json.dumps(obj).encode()
    if len(raw) <= MAX_BODY_BYTES:
        assert parse_object(raw) == obj


@given(st.binary(max_size=600))
def test_any_bytes_give_a_dict_or_a_body_error(raw: bytes) -> None:
    try:
        result: object = parse_object(raw)
    except BodyError as e:
        result = e.reason
    assert isinstance(result, dict | str)
    assert result != ""
