"""Typed, validated configuration from one TOML file.

Each component owns one *section*: a frozen dataclass whose fields carry their unit in
the name (``timeout_s``, ``max_bytes``) and their bounds in field metadata. This module
turns a TOML table into such a dataclass and refuses anything it does not understand:

- an unknown key is an error (typos must not silently fall back to a default);
- a value of the wrong type is an error (``true`` is not an int, ``"5"`` is not an int);
- a number outside ``metadata["min"]``/``metadata["max"]`` is an error;
- a string outside ``Literal[...]`` is an error;
- a string or path longer than ``metadata["max_len"]`` (default :data:`MAX_STRING_CHARS`),
  an array longer than :data:`MAX_ARRAY_ITEMS`, a file larger than :data:`MAX_CONFIG_BYTES`
  or nested deeper than the parser can follow is an error (never a traceback).

Every problem is reported, not just the first: :class:`ConfigError` carries them all in
``problems`` (one line each, in file order) and its message joins them with newlines.

Every message names the dotted key, what was expected and what was found, e.g.
``outbox.max_bytes: expected an integer >= 1048576, got 10``.

Secrets are never inline values: fields holding key material are ``Path`` fields that
name a file.

Use :func:`section` to declare bounds::

    @dataclass(frozen=True)
    class OutboxConfig:
        max_bytes: int = section(256 * 2**20, min=2**20, help="outbox size limit")

and :func:`from_mapping` / :func:`load_toml` to build one, :func:`json_schema` to
describe it. Only the standard library is imported here.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

from kycedge.core.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (JetPack 6)
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

T = TypeVar("T")

__all__ = [
    "MAX_ARRAY_ITEMS",
    "MAX_CONFIG_BYTES",
    "MAX_STRING_CHARS",
    "ConfigError",
    "config_error",
    "from_mapping",
    "json_schema",
    "load_toml",
    "problems_of",
    "section",
]

MAX_CONFIG_BYTES = 1 << 20  # a config file is a few kB; anything near this is not one
MAX_STRING_CHARS = 4096  # PATH_MAX; every string and path value, unless a field says less
MAX_ARRAY_ITEMS = 1024


def config_error(problems: list[str]) -> ConfigError:
    """One :class:`ConfigError` for several problems (``.problems`` lists them)."""
    e = ConfigError("\n".join(problems))
    e.problems = list(problems)  # type: ignore[attr-defined]
    return e


def problems_of(e: ConfigError) -> list[str]:
    """Every problem a :class:`ConfigError` stands for (one line each)."""
    found = getattr(e, "problems", None)
    return list(found) if found else e.message.splitlines() or [e.message]


class _Reported(Exception):
    """A nested table's problems are already in the list: the outer field adds nothing."""


def section(
    default: Any = dataclasses.MISSING,
    *,
    min: float | None = None,
    max: float | None = None,
    help: str = "",
    default_factory: Any = dataclasses.MISSING,
    max_len: int | None = None,
) -> Any:
    """A dataclass field with bounds and a help text for validation and the schema."""
    meta = {"min": min, "max": max, "help": help, "max_len": max_len}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def load_toml(path: Path, cls: type[T]) -> T:
    """Read ``path`` as TOML and build ``cls`` from it (see :func:`from_mapping`)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file: {e.strerror or e}") from e
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: expected a config file of at most {MAX_CONFIG_BYTES} bytes, got more")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: expected UTF-8 text, got undecodable bytes ({e})") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    except RecursionError as e:
        raise ConfigError(f"{path}: not valid TOML for kycedge: arrays or tables nested deeper than "
                          "the parser can follow (a config needs at most a few levels)") from e
    return from_mapping(cls, data, where=str(path) + ": ")


def from_mapping(cls: type[T], data: Mapping[str, Any], *, where: str = "", key: str = "") -> T:
    """Build the frozen dataclass ``cls`` from ``data``, validating every value.

    Raises one :class:`ConfigError` listing every problem found (``.problems``).
    """
    problems: list[str] = []
    try:
        out = _build(cls, data, where, key, problems)
    except RecursionError:  # pragma: no cover - load_toml's parser gives up first
        problems.append(f"{where}{key or '<root>'}: nested deeper than a config can be")
        out = None
    if problems or out is None:
        raise config_error(problems)
    return out


def _build(cls: type[T], data: Any, where: str, key: str, problems: list[str]) -> T | None:
    if not dataclasses.is_dataclass(cls):  # pragma: no cover - programming error
        raise TypeError(f"{cls!r} is not a dataclass")
    if not isinstance(data, Mapping):
        problems.append(f"{where}{key or '<root>'}: expected a table, got {_describe(data)}")
        return None
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    before = len(problems)
    known = ", ".join(sorted(fields)) or "(none)"
    for u in sorted(set(data) - set(fields), key=str):
        problems.append(f"{where}{_join(key, str(u)[:80])}: unknown key; expected one of: {known}")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        dotted = _join(key, name)
        if name in data:
            try:
                kwargs[name] = _convert(hints[name], data[name], f.metadata, where, dotted, problems)
            except _Reported:
                pass
            except ConfigError as e:
                problems.append(e.message)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            problems.append(f"{where}{dotted}: required key is missing")
    if len(problems) > before:
        return None
    try:
        return cls(**kwargs)
    except ConfigError as e:
        problems.extend(f"{where}{p}" for p in problems_of(e))
    except (TypeError, ValueError) as e:
        # cross-field rules, one problem a line; "field: ..." lines are given the dotted key
        for text in str(e).splitlines() or [type(e).__name__]:
            head = text.split(":", 1)[0]
            if head in fields:
                text = _join(key, text)
            elif not (head == key or head.startswith(f"{key}.")):
                text = f"{key or '<root>'}: {text}"
            problems.append(f"{where}{text}")
    return None


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _check_len(value: str, meta: Mapping[str, Any], where: str, key: str) -> None:
    limit = meta.get("max_len") or MAX_STRING_CHARS
    if len(value) > limit:
        raise ConfigError(f"{where}{key}: expected at most {limit} characters, got {len(value)}")


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"float {value}"
    if isinstance(value, str):
        return f"string {value[:60]!r}" + (f" ({len(value)} characters)" if len(value) > 60 else "")
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        return f"an array of {len(value)}"
    return type(value).__name__


def _bounds_text(meta: Mapping[str, Any]) -> str:
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and hi is not None:
        return f" in [{lo}, {hi}]"
    if lo is not None:
        return f" >= {lo}"
    if hi is not None:
        return f" <= {hi}"
    return ""


def _check_bounds(value: float, meta: Mapping[str, Any], what: str, where: str, key: str) -> None:
    lo, hi = meta.get("min"), meta.get("max")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{where}{key}: expected {what}{_bounds_text(meta)}, got {value}")


def _convert(tp: Any, value: Any, meta: Mapping[str, Any], where: str, key: str,
             problems: list[str] | None = None) -> Any:
    problems = [] if problems is None else problems
    origin = get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        members = [a for a in get_args(tp) if a is not type(None)]
        # TOML has no null: an optional field is simply left out.
        if len(members) == 1:
            return _convert(members[0], value, meta, where, key, problems)
        raise TypeError(f"unsupported union type for {key}: {tp}")  # pragma: no cover
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices or isinstance(value, bool) != isinstance(choices[0], bool):
            raise ConfigError(
                f"{where}{key}: expected one of {', '.join(map(repr, choices))}, "
                f"got {_describe(value)}"
            )
        return value
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{where}{key}: expected an array, got {_describe(value)}")
        if len(value) > MAX_ARRAY_ITEMS:
            raise ConfigError(f"{where}{key}: expected an array of at most {MAX_ARRAY_ITEMS} values, "
                              f"got {len(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            items, bad = [], False
            for i, v in enumerate(value):
                try:
                    items.append(_convert(args[0], v, {}, where, f"{key}[{i}]", problems))
                except _Reported:
                    bad = True
                except ConfigError as e:
                    problems.append(e.message)
                    bad = True
            if bad:
                raise _Reported
            return tuple(items)
        if len(args) != len(value):
            raise ConfigError(
                f"{where}{key}: expected an array of {len(args)}, got {_describe(value)}"
            )
        return tuple(_convert(a, v, {}, where, f"{key}[{i}]") for i, (a, v) in enumerate(
            zip(args, value, strict=True)))
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        built = _build(tp, value, where, key, problems)
        if built is None:
            raise _Reported
        return built
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}{key}: expected true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(
                f"{where}{key}: expected an integer{_bounds_text(meta)}, got {_describe(value)}"
            )
        _check_bounds(value, meta, "an integer", where, key)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(
                f"{where}{key}: expected a number{_bounds_text(meta)}, got {_describe(value)}"
            )
        if not math.isfinite(value):
            raise ConfigError(f"{where}{key}: expected a finite number, got {value}")
        _check_bounds(float(value), meta, "a number", where, key)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}{key}: expected a string, got {_describe(value)}")
        _check_len(value, meta, where, key)
        return value
    if tp is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}{key}: expected a file path, got {_describe(value)}")
        _check_len(value, meta, where, key)
        if "\0" in value:
            raise ConfigError(f"{where}{key}: expected a file path, got a string with a NUL character")
        return Path(value)
    raise TypeError(f"unsupported config type for {key}: {tp}")  # pragma: no cover


def json_schema(cls: type[Any]) -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) describing the dataclass ``cls``."""
    schema = _schema_for(cls, {})
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def _schema_for(tp: Any, meta: Mapping[str, Any]) -> dict[str, Any]:
    origin = get_origin(tp)
    out: dict[str, Any]
    if origin is typing.Union or origin is types.UnionType:
        members = [a for a in get_args(tp) if a is not type(None)]
        return _schema_for(members[0], meta)
    if origin is Literal:
        out = {"enum": list(get_args(tp))}
    elif origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            out = {"type": "array", "items": _schema_for(args[0], {})}
        else:
            out = {
                "type": "array",
                "prefixItems": [_schema_for(a, {}) for a in args],
                "minItems": len(args),
                "maxItems": len(args),
            }
    elif dataclasses.is_dataclass(tp):
        hints = get_type_hints(tp)
        props: dict[str, Any] = {}
        required = []
        for f in dataclasses.fields(tp):
            if not f.init:
                continue
            props[f.name] = _schema_for(hints[f.name], f.metadata)
            if f.default is not dataclasses.MISSING and _jsonable(f.default):
                props[f.name]["default"] = _jsonable(f.default)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                required.append(f.name)
        out = {"type": "object", "properties": props, "additionalProperties": False}
        if required:
            out["required"] = required
        if tp.__doc__:
            out["description"] = tp.__doc__.strip().splitlines()[0]
    elif tp is bool:
        out = {"type": "boolean"}
    elif tp is int:
        out = {"type": "integer"}
    elif tp is float:
        out = {"type": "number"}
    elif tp is str or tp is Path:
        out = {"type": "string"}
    else:  # pragma: no cover
        raise TypeError(f"unsupported config type {tp}")
    if meta.get("min") is not None:
        out["minimum"] = meta["min"]
    if meta.get("max") is not None:
        out["maximum"] = meta["max"]
    if meta.get("help"):
        out["description"] = meta["help"]
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return None
