"""The agent's web app: static HTML/CSS/JS and one message catalogue, shipped as package data.

Served by the local API at ``/app/`` on the loopback TCP listener (same origin as the
API, no CDN, no network fetch). ``static/i18n.json`` is the one catalogue: every
language's strings keyed by the API's stable reason codes, and the consent text with its
``consent_version``, which the API checks on session start.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path

__all__ = ["catalogue", "consent_version", "static_dir"]


def static_dir() -> Path:
    return Path(str(resources.files("kycedge.unit.webapp").joinpath("static")))


@functools.cache
def catalogue() -> dict[str, object]:
    data: dict[str, object] = json.loads((static_dir() / "i18n.json").read_text(encoding="utf-8"))
    return data


def consent_version() -> str:
    return str(catalogue()["consent_version"])
