"""Structured JSON log lines (journald keeps them), with no biometric data.

One JSON object per line: ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``msg`` and the
``extra={...}`` fields of the call. The unit (stdout) and the receiver (stderr) write the
same form. Two styles:

- ``json``: the bare object, for files, pipes and log shippers;
- ``journal``: the same object behind a syslog priority prefix (``<6>{...}`` for info,
  ``<4>`` warning, ``<3>`` error, ``<2>`` critical, ``<7>`` debug). journald strips the
  prefix and stores the priority, so ``journalctl -p warning`` filters, and the JSON
  fields stay greppable (``journalctl -u kycedge -o cat``).

The style is ``journal`` when the stream is the journal (systemd's ``JOURNAL_STREAM``
names its device and inode), else ``json``; ``KYCEDGE_LOG_FORMAT=json|journal`` forces
one. Defence in depth, because a log line is kept for years on a machine nobody audits:

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
import os
import re
import sys
import time
import traceback
from typing import Any, TextIO

from kycedge.core.errors import ConfigError

__all__ = ["JournalFormatter", "JsonFormatter", "journal_attached", "log_style", "scrub", "setup_logging"]

LOG_FORMAT_ENV = "KYCEDGE_LOG_FORMAT"
STYLES = ("json", "journal")

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


def syslog_priority(levelno: int) -> int:
    """The syslog priority (RFC 5424 severity) of a logging level."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


class JournalFormatter(JsonFormatter):
    """The JSON line behind a ``<N>`` syslog priority prefix, which journald turns into PRIORITY."""

    def format(self, record: logging.LogRecord) -> str:
        return f"<{syslog_priority(record.levelno)}>{super().format(record)}"


def journal_attached(stream: TextIO) -> bool:
    """True when ``stream`` is systemd's journal stream (``JOURNAL_STREAM=<dev>:<inode>``)."""
    want = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return bool(want) and want == f"{st.st_dev}:{st.st_ino}"


def log_style(stream: TextIO) -> str:
    """``KYCEDGE_LOG_FORMAT`` if set, else ``journal`` on the journal stream, else ``json``."""
    forced = os.environ.get(LOG_FORMAT_ENV, "")
    if forced:
        if forced not in STYLES:
            raise ConfigError(f"{LOG_FORMAT_ENV}: expected one of {', '.join(STYLES)}, got {forced!r:.40}")
        return forced
    return "journal" if journal_attached(stream) else "json"


def setup_logging(level: str = "info", stream: TextIO | None = None, *,
                  style: str | None = None) -> logging.Handler:
    """Route every ``kycedge.*`` (and root) record to ``stream`` (stdout) as JSON lines.

    ``style``: ``json`` or ``journal``; None = :func:`log_style` of the stream.
    """
    out = stream or sys.stdout
    chosen = style or log_style(out)
    handler = logging.StreamHandler(out)
    handler.setFormatter(JournalFormatter() if chosen == "journal" else JsonFormatter())
    handler.set_name("kycedge-json")
    root = logging.getLogger()
    for h in list(root.handlers):
        if h.get_name() == "kycedge-json":  # ours from an earlier call: replace it
            root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    return handler
