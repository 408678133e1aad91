"""read_image_file: only regular files, never more than the decoder's size limit read."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from kycedge.core.errors import ImageError
from kycedge.vision import decode
from kycedge.vision.decode import DecodeConfig, read_image_file

SMALL = DecodeConfig(max_bytes=4096)


def reason(path: Path, cfg: DecodeConfig = SMALL) -> str:
    with pytest.raises(ImageError) as e:
        read_image_file(path, cfg)
    assert str(path) in e.value.message
    return e.value.reason


def test_regular_file_read(faces_dir: Path) -> None:
    p = faces_dir / "obama.jpg"
    assert read_image_file(p) == p.read_bytes()


def test_special_files_refused(tmp_path: Path) -> None:
    assert reason(Path("/dev/zero")) == "not-a-file"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)                       # no writer: a blocking open would hang here
    assert reason(fifo) == "not-a-file"
    assert reason(tmp_path) == "not-a-file"
    assert reason(tmp_path / "missing.jpg") == "unreadable-file"


def test_size_limit_from_the_size_and_from_the_bytes(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    big = tmp_path / "big.jpg"
    with open(big, "wb") as f:
        f.truncate(10 * 2**30)            # sparse 10 GiB: refused from its size, nothing read
    assert reason(big) == "file-too-large"
    ok = tmp_path / "ok.jpg"
    ok.write_bytes(b"\xff\xd8\xff" + bytes(4093))
    assert len(read_image_file(ok, SMALL)) == 4096
    # A file whose size says little (growing, /proc-like): reading stops at max_bytes + 1.
    ok.write_bytes(bytes(3 * 2**20))
    real_fstat = os.fstat
    read: list[int] = []
    real_read = os.read

    def fstat(fd: int) -> os.stat_result:
        st = list(real_fstat(fd))
        st[6] = 0                         # st_size
        return os.stat_result(st)

    def counting_read(fd: int, n: int) -> bytes:
        b = real_read(fd, n)
        read.append(len(b))
        return b

    monkeypatch.setattr(decode.os, "fstat", fstat)
    monkeypatch.setattr(decode.os, "read", counting_read)
    assert reason(ok) == "file-too-large"
    assert sum(read) == SMALL.max_bytes + 1


def test_embed_dev_zero_refused_within_memory(tmp_path: Path) -> None:
    """`kycedge embed /dev/zero` under a 3 GiB address-space limit: refused, no MemoryError."""
    from kycedge.vision import default_models_dir

    if not (default_models_dir() / "manifest.json").exists():
        pytest.skip("no models")
    code = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, ({3 * 2**30}, {3 * 2**30}))
        from kycedge.unit.cli import main
        sys.exit(main(["embed", "/dev/zero"]))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr[-2000:]
    assert '"reason": "not-a-file"' in out.stdout
    assert "MemoryError" not in out.stderr
