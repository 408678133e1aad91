"""Which bundle a unit should run: the signed ``rollout.json`` and a deterministic pick.

``rollout.json`` is a TUF target (signed by the targets role like the bundles)::

    {"format": 1, "stable": 6,
     "candidate": {"bundle_version": 7, "percent": 10.0, "cohorts": ["pilot"]}}

A unit runs the candidate when its configured cohort is listed or when its bucket,
``sha256("kycedge-rollout:" + device_id)`` mapped to [0, 100), is below ``percent``; else
it runs ``stable``. The bucket does not depend on the bundle, so raising the percentage
of one rollout only ever adds units. Pure functions only.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from kycedge.protocol.update_errors import BundleError

__all__ = ["ROLLOUT_TARGET", "Candidate", "Rollout", "RolloutChange", "apply_change", "bucket", "choose",
           "parse_rollout"]

ROLLOUT_TARGET = "rollout.json"


@dataclass(frozen=True)
class Candidate:
    bundle_version: int
    percent: float
    cohorts: tuple[str, ...]


@dataclass(frozen=True)
class Rollout:
    stable: int | None
    candidate: Candidate | None

    def to_json(self) -> bytes:
        cand: dict[str, Any] | None = None
        if self.candidate is not None:
            cand = {"bundle_version": self.candidate.bundle_version,
                    "percent": self.candidate.percent, "cohorts": list(self.candidate.cohorts)}
        return json.dumps({"format": 1, "stable": self.stable, "candidate": cand},
                          sort_keys=True, separators=(",", ":")).encode()


def bucket(device_id: str) -> float:
    """The unit's position in [0, 100): stable across bundles and restarts."""
    digest = hashlib.sha256(b"kycedge-rollout:" + device_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100.0


def choose(rollout: Rollout, device_id: str, cohort: str = "") -> int | None:
    """The bundle version this unit should run, or None when nothing is published."""
    c = rollout.candidate
    if c is not None and ((cohort and cohort in c.cohorts) or bucket(device_id) < c.percent):
        return c.bundle_version
    return rollout.stable


@dataclass(frozen=True)
class RolloutChange:
    """What an admin asked to change; ``None`` (or False) means "keep what is signed"."""

    stable: int | None = None
    candidate: int | None = None
    percent: float | None = None
    cohorts: tuple[str, ...] | None = None
    clear_candidate: bool = False

    @property
    def empty(self) -> bool:
        return self == RolloutChange()


def apply_change(current: Rollout, change: RolloutChange) -> Rollout:
    """``current`` with the fields ``change`` names replaced, every other field kept.

    ``percent``/``cohorts`` change the candidate (the signed one, or the one ``change``
    names); naming them with no candidate at all is a :class:`BundleError`, as is naming a
    candidate together with ``clear_candidate``. A candidate equal to the stable bundle is
    dropped: every unit gets that bundle either way. The result is validated with the
    same parser the units use.
    """
    if change.clear_candidate and (change.candidate is not None or change.percent is not None
                                   or change.cohorts is not None):
        raise BundleError("rollout: expected either a candidate change or clearing the candidate, "
                          "got both")
    stable = change.stable if change.stable is not None else current.stable
    cand = None if change.clear_candidate else current.candidate
    if change.candidate is not None:
        cand = Candidate(change.candidate, cand.percent if cand else 0.0, cand.cohorts if cand else ())
    if change.percent is not None or change.cohorts is not None:
        if cand is None:
            raise BundleError("rollout: expected a candidate bundle for --percent/--cohort "
                              "(name one with --candidate), the signed rollout has none")
        cand = Candidate(cand.bundle_version,
                         change.percent if change.percent is not None else cand.percent,
                         change.cohorts if change.cohorts is not None else cand.cohorts)
    if cand is not None and cand.bundle_version == stable:
        cand = None
    out = Rollout(stable, cand)
    return parse_rollout(out.to_json())


def parse_rollout(data: bytes) -> Rollout:
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise BundleError(f"rollout.json: expected UTF-8 JSON, got undecodable data ({e})") from e
    if not isinstance(obj, dict) or obj.get("format") != 1:
        raise BundleError(f"rollout.json: expected an object with format 1, got {str(obj)[:80]!r}")
    stable = obj.get("stable")
    if stable is not None and (isinstance(stable, bool) or not isinstance(stable, int) or stable < 1):
        raise BundleError(f"rollout.stable: expected a bundle version >= 1 or null, got {stable!r}")
    cand_raw = obj.get("candidate")
    cand = None
    if cand_raw is not None:
        if not isinstance(cand_raw, dict):
            raise BundleError(f"rollout.candidate: expected an object, got {cand_raw!r}")
        v, p, cs = cand_raw.get("bundle_version"), cand_raw.get("percent"), cand_raw.get("cohorts", [])
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise BundleError(f"rollout.candidate.bundle_version: expected an integer >= 1, got {v!r}")
        if isinstance(p, bool) or not isinstance(p, int | float) or not math.isfinite(p) \
                or not 0 <= p <= 100:
            raise BundleError(f"rollout.candidate.percent: expected a number in [0, 100], got {p!r}")
        if not isinstance(cs, list) or not all(isinstance(c, str) and c for c in cs) or len(cs) > 64:
            raise BundleError(f"rollout.candidate.cohorts: expected up to 64 names, got {cs!r}")
        cand = Candidate(v, float(p), tuple(cs))
    return Rollout(stable, cand)
