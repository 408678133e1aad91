"""Durable file-system primitives: atomic writes, directory fsync, symlink swap."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "fsync_dir", "fsync_file", "swap_symlink"]


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


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file, fsync, ``os.replace``, fsync of the dir."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
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
