"""A real, small filesystem that can be filled up: a tmpfs mounted for one test (root only).

    from support.smallfs import small_fs  # noqa: F401  (the fixture)

    def test_x(small_fs: SmallFs) -> None:
        ...; small_fs.fill()          # no byte left (ENOSPC for the next write)
        small_fs.free()               # the filler is gone again

Skips (with the reason) where the test cannot mount (not root, no mount permission).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class SmallFs:
    root: Path

    @property
    def filler(self) -> Path:
        return self.root / ".filler"

    def fill(self) -> None:
        """Write until the filesystem refuses (ENOSPC)."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (65536, 4096, 512, 1):
                try:
                    while True:
                        os.write(fd, b"\0" * size)
                except OSError:
                    continue
        finally:
            os.close(fd)
        st = os.statvfs(self.root)
        assert st.f_bavail == 0, "the filesystem is not full"

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def available_bytes(self) -> int:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[SmallFs]:
    root = tmp_path / "smallfs"
    root.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(root)],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield SmallFs(root)
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)
