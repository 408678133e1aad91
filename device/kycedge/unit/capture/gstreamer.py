"""V4L2/USB and Jetson CSI cameras through a ``gst-launch-1.0 … ! fdsink`` subprocess.

No GStreamer Python bindings are needed: the unit runs ``gst-launch-1.0 -q`` with a
pipeline that ends in raw RGB caps of a fixed size and ``fdsink fd=1``, and this module
reads exactly ``width*height*3`` bytes per frame from the pipe. A reader thread drains
the pipe continuously and keeps only the newest frame (older ones are dropped, so a slow
pipeline sees fresh frames and the pipe never blocks the camera); ``read()`` waits for a
frame newer than the last one it returned. stderr is drained into a short tail used in
error messages only.

Pipelines (see :func:`v4l2_pipeline`, :func:`jetson_csi_pipeline`)::

    v4l2src device=/dev/video0 ! decodebin ! videoconvert ! videoscale ! videorate
        ! video/x-raw,format=RGB,width=W,height=H,framerate=F/1 ! fdsink fd=1 sync=false
    nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=W,height=H,framerate=F/1
        ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert
        ! video/x-raw,format=RGB,width=W,height=H ! fdsink fd=1 sync=false

The process seam (``spawn``) lets the tests drive the parser with a fake process.
"""

from __future__ import annotations

import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO, Protocol

import numpy as np

from kycedge.core.errors import CaptureError
from kycedge.unit.capture.base import CaptureTimeoutError, Frame, SourceClosedError

__all__ = [
    "GST_LAUNCH",
    "GStreamerSource",
    "ProcessLike",
    "build_command",
    "jetson_csi_pipeline",
    "v4l2_pipeline",
]

GST_LAUNCH = "gst-launch-1.0"
_STDERR_TAIL = 2048


class ProcessLike(Protocol):
    """What this module needs of ``subprocess.Popen``."""

    stdout: IO[bytes] | None
    stderr: IO[bytes] | None

    def poll(self) -> int | None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...
    def wait(self, timeout: float | None = None) -> int: ...


Spawn = Callable[[Sequence[str]], ProcessLike]


def _popen(cmd: Sequence[str]) -> ProcessLike:
    try:
        return subprocess.Popen(
            list(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            bufsize=0,
        )
    except OSError as e:
        raise CaptureError(
            f"cannot start {cmd[0]}: {e.strerror or e} (install gstreamer1.0-tools)",
            reason="capture-unavailable",
        ) from e


def v4l2_pipeline(device: str, width: int, height: int, fps: int) -> str:
    """Source part for a V4L2/USB camera (raw or MJPEG, decoded and scaled to RGB)."""
    return (
        f"v4l2src device={shlex.quote(device)} ! decodebin ! videoconvert ! videoscale ! videorate"
        f" ! video/x-raw,framerate={fps}/1"
    )


def jetson_csi_pipeline(sensor_id: int, width: int, height: int, fps: int) -> str:
    """Source part for a Jetson CSI camera (Argus, NVMM buffers converted by nvvidconv)."""
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! video/x-raw(memory:NVMM),width={width},"
        f"height={height},framerate={fps}/1 ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert"
    )


def build_command(source: str, width: int, height: int) -> list[str]:
    """``gst-launch-1.0 -q SOURCE ! videoconvert ! RGB caps ! fdsink fd=1`` as argv."""
    if not source.strip():
        raise CaptureError("gstreamer: expected a source pipeline description, got an empty string",
                           reason="bad-config")
    if "fdsink" in source or "filesink" in source:
        raise CaptureError(
            f"gstreamer: the pipeline must not contain its own sink, got {source!r}",
            reason="bad-config",
        )
    tail = (
        f" ! videoconvert ! videoscale ! video/x-raw,format=RGB,width={width},height={height}"
        " ! fdsink fd=1 sync=false"
    )
    return [GST_LAUNCH, "-q", *shlex.split(source + tail)]


class GStreamerSource:
    """Raw RGB frames from a gst-launch subprocess."""

    def __init__(
        self,
        source: str,
        width: int,
        height: int,
        *,
        spawn: Spawn = _popen,
        label: str = "gstreamer",
    ) -> None:
        self._cmd = build_command(source, width, height)
        self._w, self._h = width, height
        self._frame_bytes = width * height * 3
        self._spawn = spawn
        self._label = label
        self._proc: ProcessLike | None = None
        self._cond = threading.Condition()
        self._latest: bytearray | None = None
        self._latest_seq = 0
        self._returned_seq = 0
        self._error: str | None = None
        self._stderr_tail = b""
        self._threads: list[threading.Thread] = []
        self.dropped = 0

    @property
    def name(self) -> str:
        return f"{self._label}:{self._w}x{self._h}"

    @property
    def command(self) -> list[str]:
        return list(self._cmd)

    def open(self) -> None:
        self.close()
        self._latest, self._latest_seq, self._returned_seq = None, 0, 0
        self._error, self._stderr_tail, self.dropped = None, b"", 0
        proc = self._spawn(self._cmd)
        self._proc = proc
        self._threads = [  # stderr first: the frame pump joins it when the pipeline exits
            threading.Thread(target=self._drain_stderr, args=(proc,), name="gst-stderr", daemon=True),
            threading.Thread(target=self._pump, args=(proc,), name="gst-frames", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _pump(self, proc: ProcessLike) -> None:
        out = proc.stdout
        assert out is not None
        try:
            while True:
                buf = bytearray(self._frame_bytes)
                view = memoryview(buf)
                got = 0
                while got < self._frame_bytes:
                    chunk = out.read(self._frame_bytes - got)
                    if not chunk:
                        break
                    view[got : got + len(chunk)] = chunk
                    got += len(chunk)
                view.release()
                if got < self._frame_bytes:
                    self._fail(got)
                    return
                with self._cond:
                    if self._latest is not None and self._latest_seq > self._returned_seq:
                        self.dropped += 1
                    self._latest = buf
                    self._latest_seq += 1
                    self._cond.notify_all()
        except (OSError, ValueError) as e:  # pipe closed under us by close()
            with self._cond:
                self._error = self._error or f"pipe read failed: {e}"
                self._cond.notify_all()

    def _fail(self, partial: int) -> None:
        code = None
        if self._proc is not None:
            try:
                code = self._proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                code = None
        # The pipeline's last words explain the exit: let the stderr drain reach EOF first
        # (it ends once the process has exited), so the error carries them.
        for th in self._threads:
            if th.name == "gst-stderr" and th.ident is not None and th is not threading.current_thread():
                th.join(timeout=1.0)
        detail = f"exited with code {code}" if code is not None else "closed its output"
        if partial:
            detail += f" mid-frame ({partial} of {self._frame_bytes} bytes)"
        with self._cond:
            self._error = self._error or detail
            self._cond.notify_all()

    def _drain_stderr(self, proc: ProcessLike) -> None:
        err = proc.stderr
        if err is None:
            return
        try:
            while chunk := err.read(512):
                self._stderr_tail = (self._stderr_tail + chunk)[-_STDERR_TAIL:]
        except (OSError, ValueError):
            return

    def read(self, timeout_s: float = 2.0) -> Frame:
        if self._proc is None:
            raise SourceClosedError(f"{self.name}: read() before open()")
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._latest_seq <= self._returned_seq:
                if self._error is not None:
                    tail = self._stderr_tail.decode("utf-8", "replace").strip().splitlines()[-3:]
                    raise CaptureError(
                        f"{self.name}: pipeline {self._error}"
                        + (f": {' | '.join(tail)}" if tail else ""),
                        reason="capture-failed",
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CaptureTimeoutError(f"{self.name}: no frame within {timeout_s} s")
                self._cond.wait(left)
            assert self._latest is not None
            buf, self._latest = self._latest, None
            self._returned_seq = self._latest_seq
            seq = self._latest_seq
        rgb = np.frombuffer(buf, dtype=np.uint8).reshape(self._h, self._w, 3)
        return Frame(rgb=rgb, seq=seq)

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=2.0)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        for t in self._threads:
            t.join(timeout=2.0)
        self._threads = []
        with self._cond:
            self._latest = None
