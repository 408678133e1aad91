"""Hand an issued private key to the service that reads it (``--key-owner``/``--key-group``).

``kycedge-fleet ... issue`` writes keys root-owned, 0600. A daemon that drops privileges
cannot read that: Mosquitto starts as root, then runs as user ``mosquitto`` and only then
loads its TLS key ("Unable to load server key file ... Permission denied"). Two ways out,
both explicit:

- ``--key-group mosquitto``: the key stays owned by its writer (root) and becomes
  ``0640`` with group ``mosquitto``; the service reads it, cannot rewrite it;
- ``--key-owner kycedge-carrier``: the key is owned by that user (and its primary group),
  still ``0600``; for a service that runs as its own user (the receiver).

The key is chowned before its mode is widened, so it is never readable by a group it was
not meant for.
"""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path

from kycedge.core.errors import KycEdgeError

__all__ = ["KeyAccessError", "check_names", "hand_over"]


class KeyAccessError(KycEdgeError):
    """The key's owner or group could not be set (unknown name, not permitted)."""

    reason = "key-access"


def _uid(name: str) -> tuple[int, int]:
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise KeyAccessError(f"--key-owner: expected an existing user, got {name!r:.40}") from None
    return pw.pw_uid, pw.pw_gid


def _gid(name: str) -> int:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise KeyAccessError(f"--key-group: expected an existing group, got {name!r:.40}") from None


def check_names(owner: str | None, group: str | None) -> None:
    """Refuse an unknown user or group before anything is issued."""
    if owner is not None:
        _uid(owner)
    if group is not None:
        _gid(group)


def hand_over(key: Path, *, owner: str | None = None, group: str | None = None) -> int:
    """Give ``key`` to ``owner`` (0600) and/or make it readable by ``group`` (0640).

    Returns the resulting mode. Neither given: nothing changes (0600, the writer's).
    """
    if owner is None and group is None:
        return 0o600
    uid, gid = (-1, -1) if owner is None else _uid(owner)
    if group is not None:
        gid = _gid(group)
    mode = 0o640 if group is not None else 0o600
    try:
        os.chown(key, uid, gid)
        os.chmod(key, mode)
    except PermissionError as e:
        raise KeyAccessError(
            f"{key}: cannot give the key to {owner or ''}{':' + group if group else ''}: {e.strerror} "
            "(run as root, or chown/chmod it yourself)") from e
    return mode
