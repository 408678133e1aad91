from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kycedge.core.config import ConfigError, from_mapping, json_schema, load_toml, section


@dataclass(frozen=True)
class Inner:
    timeout_s: float = section(5.0, min=0.1, max=60, help="how long")
    mode: Literal["fast", "safe"] = "safe"


@dataclass(frozen=True)
class Outer:
    max_bytes: int = section(1024, min=1)
    key_file: Path = Path("/etc/k")
    enabled: bool = True
    names: tuple[str, ...] = ()
    inner: Inner = field(default_factory=Inner)


def test_defaults_and_nested() -> None:
    cfg = from_mapping(Outer, {"inner": {"timeout_s": 2}})
    assert cfg.inner.timeout_s == 2.0
    assert cfg.max_bytes == 1024
    assert cfg.inner.mode == "safe"


def test_unknown_key_names_the_key_and_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"inner\.timout_s: unknown key; expected one of: mode, timeout_s"):
        from_mapping(Outer, {"inner": {"timout_s": 2}})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"max_bytes": 0}, r"max_bytes: expected an integer >= 1, got 0"),
        ({"max_bytes": "5"}, r"max_bytes: expected an integer >= 1, got string '5'"),
        ({"max_bytes": True}, r"max_bytes: expected an integer >= 1, got boolean true"),
        ({"enabled": 1}, r"enabled: expected true or false, got integer 1"),
        ({"inner": {"timeout_s": 99}}, r"inner\.timeout_s: expected a number in \[0.1, 60\], got 99"),
        ({"inner": {"mode": "x"}}, r"inner\.mode: expected one of 'fast', 'safe', got string 'x'"),
        ({"names": "a"}, r"names: expected an array, got string 'a'"),
        ({"names": ["a", 1]}, r"names\[1\]: expected a string, got integer 1"),
        ({"inner": 3}, r"inner: expected a table, got integer 3"),
        ({"key_file": ""}, r"key_file: expected a file path"),
    ],
)
def test_bad_values_name_key_expected_and_actual(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_mapping(Outer, data)


def test_load_toml_errors(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_toml(p, Outer)
    p.write_text("max_bytes = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_toml(p, Outer)
    p.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="expected UTF-8"):
        load_toml(p, Outer)
    p.write_text("max_bytes = 7\n[inner]\nmode = 'fast'\n")
    assert load_toml(p, Outer).inner.mode == "fast"


def test_schema_is_closed_and_has_bounds() -> None:
    s = json_schema(Outer)
    assert s["additionalProperties"] is False
    assert s["properties"]["max_bytes"]["minimum"] == 1
    assert s["properties"]["inner"]["properties"]["mode"]["enum"] == ["fast", "safe"]


@given(st.dictionaries(st.text(max_size=8), st.one_of(st.integers(), st.text(), st.booleans(), st.floats())))
def test_never_raises_anything_but_config_error(data: dict[str, object]) -> None:
    with contextlib.suppress(ConfigError):
        from_mapping(Outer, data)
