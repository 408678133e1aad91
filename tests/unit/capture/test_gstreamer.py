"""GStreamer source frame parsing, driven through a fake gst-launch process."""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kycedge.core.errors import CaptureError
from kycedge.unit.capture.base import CaptureTimeoutError, SourceClosedError
from kycedge.unit.capture.gstreamer import GStreamerSource, build_command, jetson_csi_pipeline, v4l2_pipeline

W, H = 4, 3
FB = W * H * 3


class ChunkedPipe(io.RawIOBase):
    """A pipe that hands out data in the given chunk sizes, then EOF (or blocks)."""

    def __init__(self, data: bytes, chunks: Sequence[int], *, block_at_end: bool = False) -> None:
        self._data = data
        self._chunks = list(chunks) or [len(data) or 1]
        self._pos = 0
        self._i = 0
        self._block = threading.Event() if block_at_end else None

    def read(self, n: int = -1) -> bytes:
        if self._pos >= len(self._data):
            if self._block is not None:
                self._block.wait(5)
            return b""
        size = min(n, self._chunks[self._i % len(self._chunks)], len(self._data) - self._pos)
        self._i += 1
        out = self._data[self._pos : self._pos + size]
        self._pos += size
        return out

    def close(self) -> None:
        if self._block is not None:
            self._block.set()
        super().close()


class FakeProc:
    def __init__(self, stdout: io.RawIOBase, stderr: bytes = b"", code: int = 0) -> None:
        self.stdout = stdout
        self.stderr = io.BytesIO(stderr)
        self._code = code
        self.terminated = False

    def poll(self) -> int | None:
        return None if not self.terminated else self._code

    def terminate(self) -> None:
        self.terminated = True

    def kill(self) -> None:
        self.terminated = True

    def wait(self, timeout: float | None = None) -> int:
        return self._code


def frames(n: int) -> list[np.ndarray]:
    return [np.full((H, W, 3), i + 1, np.uint8) + np.arange(W, dtype=np.uint8)[None, :, None]
            for i in range(n)]


def source_for(proc: FakeProc) -> tuple[GStreamerSource, list[list[str]]]:
    seen: list[list[str]] = []

    def spawn(cmd: Sequence[str]) -> FakeProc:
        seen.append(list(cmd))
        return proc

    return GStreamerSource("videotestsrc", W, H, spawn=spawn), seen


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 2 * FB), min_size=1, max_size=6))
def test_frames_reassembled_from_any_chunking(chunks: list[int]) -> None:
    want = frames(3)
    proc = FakeProc(ChunkedPipe(b"".join(f.tobytes() for f in want), chunks, block_at_end=True))
    src, _ = source_for(proc)
    src.open()
    # The reader keeps only the newest frame; consume until the last one shows up.
    last = None
    reads = 0
    for _ in range(3):
        f = src.read(timeout_s=2)
        reads += 1
        assert f.rgb.shape == (H, W, 3)
        assert f.rgb.flags.writeable
        assert any(np.array_equal(f.rgb, w) for w in want)
        last = f
        if f.seq == 3:
            break
    assert last is not None
    assert last.seq == 3
    assert np.array_equal(last.rgb, want[2])
    assert src.dropped == 3 - reads  # every frame was either returned or dropped
    src.close()
    assert proc.terminated


def test_exit_mid_frame_is_an_error_with_stderr_tail() -> None:
    data = frames(1)[0].tobytes() + b"\x00" * 5
    proc = FakeProc(ChunkedPipe(data, [7]), stderr=b"ERROR: from element v4l2src0: Device busy\n", code=1)
    src, _ = source_for(proc)
    src.open()
    assert src.read(timeout_s=2).seq == 1
    with pytest.raises(CaptureError, match=r"exited with code 1 mid-frame \(5 of 36 bytes\)") as e:
        src.read(timeout_s=2)
    assert "Device busy" in str(e.value)
    assert e.value.reason == "capture-failed"
    src.close()


def test_no_frame_is_a_timeout_and_closed_source_refuses() -> None:
    proc = FakeProc(ChunkedPipe(b"", [1], block_at_end=True))
    src, seen = source_for(proc)
    with pytest.raises(SourceClosedError):
        src.read()
    src.open()
    with pytest.raises(CaptureTimeoutError):
        src.read(timeout_s=0.05)
    src.close()
    assert seen[0][:2] == ["gst-launch-1.0", "-q"]
    assert seen[0][-3:] == ["fdsink", "fd=1", "sync=false"]
    assert f"video/x-raw,format=RGB,width={W},height={H}" in seen[0]


def test_command_building() -> None:
    with pytest.raises(CaptureError, match="must not contain its own sink"):
        build_command("videotestsrc ! fdsink", 4, 4)
    with pytest.raises(CaptureError, match="empty string"):
        build_command("  ", 4, 4)
    cmd = build_command(v4l2_pipeline("/dev/video2", 640, 480, 15), 640, 480)
    assert "device=/dev/video2" in cmd
    assert "framerate=15/1" in " ".join(cmd)
    cmd = build_command(jetson_csi_pipeline(1, 1280, 720, 30), 1280, 720)
    assert cmd[2:4] == ["nvarguscamerasrc", "sensor-id=1"]
    assert "video/x-raw(memory:NVMM),width=1280,height=720,framerate=30/1" in cmd


def test_missing_gst_launch_is_capture_unavailable() -> None:
    import kycedge.unit.capture.gstreamer as g

    with pytest.raises(CaptureError) as e:
        g._popen(["/nonexistent/gst-launch-1.0", "-q"])
    assert e.value.reason == "capture-unavailable"


def test_real_pipe_from_a_child_process() -> None:
    """The same parsing over a real OS pipe (a child writes 3 frames, then exits)."""
    import subprocess
    import sys

    script = (f"import sys,time\nfor i in range(3):\n    sys.stdout.buffer.write(bytes([i + 1]) * {FB})\n"
              "    sys.stdout.buffer.flush(); time.sleep(0.05)\n"
              "sys.stderr.write('EOS on shutdown requested\\n')\n")

    def spawn(cmd: Sequence[str]) -> subprocess.Popen[bytes]:
        assert cmd[0] == "gst-launch-1.0"
        return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, bufsize=0)

    src = GStreamerSource("videotestsrc", W, H, spawn=spawn)
    src.open()
    got: list[int] = []

    def read_all() -> None:
        while True:
            got.append(int(src.read(timeout_s=5).rgb[0, 0, 0]))

    with pytest.raises(CaptureError, match="exited with code 0") as e:
        read_all()
    assert got[-1] == 3
    assert got == sorted(got)
    assert "EOS on shutdown" in str(e.value)
    src.close()
