"""The JSON log formatter drops and redacts anything that looks like biometric or image data."""

from __future__ import annotations

import base64
import io
import json
import logging

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from kycedge.core.logs import JsonFormatter, scrub


def emit(msg: str, *args: object, exc: BaseException | None = None, **extra: object) -> dict[str, object]:
    rec = logging.LogRecord("kycedge.t", logging.INFO, __file__, 1, msg, args or None,
                            (type(exc), exc, exc.__traceback__) if exc else None)
    for k, v in extra.items():
        setattr(rec, k, v)
    return json.loads(JsonFormatter().format(rec))


def test_scalars_pass_and_data_is_dropped() -> None:
    t = np.random.default_rng(0).standard_normal(128).astype(np.float32)
    out = emit("queued", session="abc", count=3, score=0.5, ok=True, arr=t, raw=t.tobytes(),
               template="x", frame_shape="8x8", meta={"a": 1})
    assert out["session"] == "abc"
    assert out["count"] == 3
    assert out["ok"] is True
    assert out["arr"] == "<dropped:ndarray>"
    assert out["raw"] == "<dropped:bytes>"
    assert out["meta"] == "<dropped:dict>"
    assert out["template"] == "<dropped:denied-name>"
    assert out["frame_shape"] == "<dropped:denied-name>"


def test_strings_that_look_like_vectors_or_encodings_are_redacted() -> None:
    t = np.random.default_rng(1).standard_normal(16).astype(np.float32)
    assert emit("t=%s", t)["msg"] == "<redacted>"
    assert emit("t=%s", str(t.tolist()))["msg"] == "<redacted>"
    assert emit(base64.b64encode(t.tobytes()).decode())["msg"] == "<redacted>"
    assert emit(t.tobytes().hex())["msg"] == "<redacted>"
    assert emit(repr(t.tobytes()))["msg"] == "<redacted>"
    assert emit("session 3f2a started in 12.5 ms")["msg"] == "session 3f2a started in 12.5 ms"


def test_exception_logged_without_values() -> None:
    t = np.ones(32, np.float32)
    try:
        raise ValueError(f"bad vector {t}")
    except ValueError as e:
        out = emit("oops", exc=e)
    assert out["exc"] == "ValueError"
    assert out["exc_msg"] == "<redacted>"
    assert isinstance(out["stack"], list)


@given(st.lists(st.floats(allow_nan=False, width=32), min_size=8, max_size=64))
def test_any_float_vector_text_is_redacted(xs: list[float]) -> None:
    assert scrub(" ".join(map(str, xs))) == "<redacted>"
    assert scrub(str(xs)) == "<redacted>"


def test_setup_logging_writes_json_lines() -> None:
    from kycedge.core.logs import setup_logging

    buf = io.StringIO()
    h = setup_logging("info", buf)
    try:
        logging.getLogger("kycedge.x").info("hello", extra={"n": 1})
    finally:
        logging.getLogger().removeHandler(h)
    line = json.loads(buf.getvalue().splitlines()[-1])
    assert (line["msg"], line["n"], line["level"]) == ("hello", 1, "info")
