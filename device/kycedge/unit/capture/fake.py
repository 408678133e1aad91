"""A fake camera behind :class:`~kycedge.unit.capture.base.FrameSource`, for tests only.

It yields the given RGB arrays in a loop (copies, as a real source does), can fail to
open, fail on the n-th read, or stall (block up to the timeout and raise
:class:`CaptureTimeoutError`), and counts opens/closes and frames so tests can check
that the daemon releases the camera.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from kycedge.core.errors import CaptureError
from kycedge.unit.capture.base import CaptureTimeoutError, Frame, SourceClosedError, check_rgb

__all__ = ["FakeCamera"]


class FakeCamera:
    def __init__(
        self,
        frames: Sequence[np.ndarray],
        *,
        fail_open: bool = False,
        fail_after: int | None = None,
    ) -> None:
        self._frames = [check_rgb(np.asarray(f), "fake camera") for f in frames]
        if not self._frames:
            raise ValueError("FakeCamera needs at least one frame")
        self.fail_open = fail_open
        self.fail_after = fail_after
        self.stalled = threading.Event()  # set: reads block until the timeout
        self.opens = 0
        self.closes = 0
        self.reads = 0
        self._is_open = False

    @property
    def name(self) -> str:
        return "fake"

    @property
    def is_open(self) -> bool:
        return self._is_open

    def set_frames(self, frames: Sequence[np.ndarray]) -> None:
        self._frames = [check_rgb(np.asarray(f), "fake camera") for f in frames]

    def open(self) -> None:
        self.opens += 1
        if self.fail_open:
            raise CaptureError("fake camera: open failed (as asked)", reason="capture-unavailable")
        self._is_open = True

    def read(self, timeout_s: float = 2.0) -> Frame:
        if not self._is_open:
            raise SourceClosedError("fake camera: read() before open()")
        if self.stalled.is_set():
            threading.Event().wait(timeout_s)
            raise CaptureTimeoutError(f"fake camera: no frame within {timeout_s} s")
        if self.fail_after is not None and self.reads >= self.fail_after:
            raise CaptureError("fake camera: read failed (as asked)")
        rgb = self._frames[self.reads % len(self._frames)].copy()
        self.reads += 1
        return Frame(rgb=rgb, seq=self.reads)

    def close(self) -> None:
        if self._is_open:
            self.closes += 1
        self._is_open = False
