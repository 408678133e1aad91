"""Structured JSON log lines on stdout (journald keeps them), with no biometric data.

One JSON object per line: ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``msg`` and the
``extra={...}`` fields of the call. Defence in depth, because a log line is kept for
years on a machine nobody audits:

- only scalar extras (str, int, float, bool, None) are written; arrays, bytes, mappings
  and any other object are replaced by ``"<dropped:TYPE>"``;
- extras named like biometric or image data (``template``, ``embedding``, ``frame``,
  ``image``, ``pixels``, ``rgb``, ``envelope``, ``payload``…) are dropped whatever
  their value;
- any string carrying a long run of base64/hex characters or a long list of numbers
  (what a serialised vector or image looks like) is replaced by ``"<redacted>"``;
- strings are cut at 300 characters; exceptions are logged as their type, a scrubbed
  message and ``file:line`` frames, never local values.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import traceback
from typing import Any, TextIO

__all__ = ["JsonFormatter", "scrub", "setup_logging"]

_STD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()) | {"message", "asctime"}
_DENY = re.compile(r"template|embedding|vector|frame|image|pixel|rgb|envelope|payload|plaintext|bytes_b64",
                   re.IGNORECASE)
_B64_RUN = re.compile(r"[A-Za-z0-9+/=_\-]{40,}")
_HEX_RUN = re.compile(r"[0-9a-fA-F]{40,}")
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+|inf|nan)(?:[eE][-+]?\d+)?"
_NUM_LIST = re.compile(rf"(?:{_NUM}[\s,;\[\]()]+){{7,}}{_NUM}")
_ELLIPSIS = re.compile(rf"{_NUM}\s+\.\.\.\s+{_NUM}")
_BYTES_ESC = re.compile(r"\\x[0-9a-fA-F]{2}")
_MAX = 300


def scrub(text: str) -> str:
    """``text`` cut to 300 characters, or ``<redacted>`` if it looks like data."""
    if (_HEX_RUN.search(text) or any(_encoded(m.group()) for m in _B64_RUN.finditer(text))
            or _NUM_LIST.search(text) or len(_BYTES_ESC.findall(text)) >= 6
            or _ELLIPSIS.search(text) or "array(" in text):
        return "<redacted>"
    return text if len(text) <= _MAX else text[:_MAX] + "…"


def _encoded(run: str) -> bool:
    """A long run of base64 characters mixing upper case, lower case and digits (not a path)."""
    return (any(c.isupper() for c in run) and any(c.islower() for c in run)
            and any(c.isdigit() for c in run))


def _value(v: Any) -> Any:
    if v is None or isinstance(v, bool | int):
        return v
    if isinstance(v, float):
        return round(v, 6)
    if isinstance(v, str):
        return scrub(v)
    return f"<dropped:{type(v).__name__}>"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub(record.getMessage()),
        }
        for k, v in vars(record).items():
            if k in _STD or k.startswith("_") or k in out:
                continue
            out[k] = "<dropped:denied-name>" if _DENY.search(k) else _value(v)
        if record.exc_info and record.exc_info[1] is not None:
            e = record.exc_info[1]
            out["exc"] = type(e).__name__
            out["exc_msg"] = scrub(str(e))
            out["stack"] = [f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}:{f.name}"
                            for f in traceback.extract_tb(e.__traceback__)][-8:]
        return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def setup_logging(level: str = "info", stream: TextIO | None = None) -> logging.Handler:
    """Route every ``kycedge.*`` (and root) record to ``stream`` as JSON lines."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    handler.set_name("kycedge-json")
    root = logging.getLogger()
    for h in list(root.handlers):
        if h.get_name() == "kycedge-json":  # ours from an earlier call: replace it
            root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    return handler
