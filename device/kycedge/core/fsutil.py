"""Durable file-system primitives: atomic writes, directory fsync, symlink swap."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from kycedge.core.errors import StorageError

__all__ = [
    "FULL_BELOW_BYTES",
    "NO_SPACE_ERRNOS",
    "atomic_write",
    "filesystem_full",
    "fsync_dir",
    "fsync_file",
    "storage_error",
    "storage_reason",
    "swap_symlink",
]

#: errno values that mean "the filesystem has no room" (reason ``storage-full``)
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
#: below this many free bytes for unprivileged writers a filesystem counts as full
FULL_BELOW_BYTES = 64 * 1024


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """THE durable write: ``path`` holds either its old content or ``data``, never a mix.

    A temp file in the same directory (created 0600, then set to ``mode`` whatever the
    umask), written and fsynced, renamed over ``path`` with ``os.replace``, then the
    directory fsynced so the rename survives a power cut. The temp file is removed when
    anything fails. Raises ``OSError``; callers convert it to their own error.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def swap_symlink(link: Path, target: str, on_tmp: Callable[[], None] | None = None) -> None:
    """Point ``link`` at ``target`` atomically: a temp symlink renamed over the old one.

    A reader sees either the old or the new target, never a missing link. The caller
    fsyncs the directory (after possibly several swaps).
    """
    tmp = link.with_name(f".{link.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target, tmp)
    if on_tmp is not None:
        on_tmp()
    os.replace(tmp, link)


def filesystem_full(path: Path) -> bool:
    """True when the filesystem holding ``path`` (or its nearest existing parent) is full."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        st = os.statvfs(p)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < FULL_BELOW_BYTES


def storage_reason(e: OSError) -> str:
    """What a failed write says of the filesystem: ``storage-full``, ``read-only`` or ``storage-error``."""
    if e.errno in NO_SPACE_ERRNOS:
        return "storage-full"
    if e.errno == errno.EROFS:
        return "read-only"
    return "storage-error"


def storage_error(e: OSError, what: str) -> StorageError:
    """The :class:`StorageError` for a failed write, with :func:`storage_reason`'s reason."""
    reason = storage_reason(e)
    if reason == "storage-full":
        return StorageError(f"{what}: the state filesystem is full ({e.strerror}); free space. Registrations "
                            "already stored are safe", reason=reason)
    if reason == "read-only":
        return StorageError(f"{what}: the state filesystem is read-only; remount it read-write",
                            reason=reason)
    return StorageError(f"{what}: {e.strerror or e}", reason=reason)
