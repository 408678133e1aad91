"""Keep the daemon's resident memory flat on glibc: fewer malloc arenas, trim after sessions.

A session allocates a few large temporaries (frame conversions, tensors) on its own
thread. glibc gives each thread its own malloc arena (up to 8 per core) and keeps freed
memory in them, so a long-running threaded daemon's RSS creeps up although nothing
leaks. :func:`limit_arenas` caps the arenas (like ``MALLOC_ARENA_MAX=2``) and
:func:`trim` hands free heap pages back to the kernel (``malloc_trim(0)``) once a
session is over. Both are no-ops where glibc is not the C library.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any

__all__ = ["limit_arenas", "trim"]

_M_ARENA_MAX = -8


@functools.lru_cache(maxsize=1)
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        lib = ctypes.CDLL(name)
        lib.mallopt  # noqa: B018 - glibc only
        lib.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return lib


def limit_arenas(n: int = 2) -> bool:
    lib = _libc()
    return bool(lib is not None and lib.mallopt(_M_ARENA_MAX, n) == 1)


def trim() -> bool:
    lib = _libc()
    return bool(lib is not None and lib.malloc_trim(0))
