"""The :class:`FrameSource` protocol, the :class:`Frame` it yields, and its config section."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from kycedge.core.config import section
from kycedge.core.errors import CaptureError

__all__ = [
    "CaptureConfig",
    "CaptureTimeoutError",
    "Frame",
    "FrameSource",
    "SourceClosedError",
    "check_rgb",
]


class SourceClosedError(CaptureError):
    """``read()`` on a source that is not open (or was closed meanwhile)."""

    reason = "source-closed"


class CaptureTimeoutError(CaptureError):
    """No frame arrived within the read timeout."""

    reason = "capture-timeout"


@dataclass(frozen=True, repr=False)
class Frame:
    """One RGB frame owned by the caller (``H×W×3`` ``uint8``), RAM only.

    ``seq`` counts frames from this source since ``open()``; ``t_mono`` is
    ``time.monotonic()`` when the frame was taken out of the camera. ``repr`` deliberately
    shows only the shape, never pixel data.
    """

    rgb: np.ndarray
    seq: int
    t_mono: float = dataclasses.field(default_factory=time.monotonic)

    def __repr__(self) -> str:
        h, w = self.rgb.shape[:2]
        return f"Frame(seq={self.seq}, {w}x{h})"


def check_rgb(arr: np.ndarray, where: str) -> np.ndarray:
    """Return ``arr`` if it is an ``H×W×3`` ``uint8`` array, else raise CaptureError."""
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3 or 0 in arr.shape:
        raise CaptureError(
            f"{where}: expected an HxWx3 uint8 RGB frame, got shape {arr.shape} dtype {arr.dtype}",
            reason="bad-frame",
        )
    return arr


@runtime_checkable
class FrameSource(Protocol):
    """A camera or a replay. Not thread-safe: one reader (the daemon's capture loop)."""

    @property
    def name(self) -> str:
        """A short description for logs (device path, directory; never pixel data)."""
        ...

    def open(self) -> None:
        """Acquire the device. Raises :class:`CaptureError` naming what failed."""
        ...

    def read(self, timeout_s: float = 2.0) -> Frame:
        """The next frame, copied out of the device's buffers (which are released).

        Raises :class:`CaptureTimeoutError` when none arrives within ``timeout_s`` and
        :class:`SourceClosedError` when the source is not open.
        """
        ...

    def close(self) -> None:
        """Release the device. Idempotent."""
        ...


_DEFAULT_REPLAY = Path("/usr/share/kycedge/replay")


@dataclass(frozen=True)
class CaptureConfig:
    """Camera / frame source ([capture])."""

    source: Literal["replay", "picamera", "v4l2", "gstreamer"] = section(
        "picamera", help="frame source: picamera (Pi CSI), v4l2 (USB), gstreamer (custom pipeline), replay"
    )
    width: int = section(1280, min=64, max=4096, help="frame width in pixels")
    height: int = section(720, min=64, max=4096, help="frame height in pixels")
    fps: int = section(15, min=1, max=120, help="frames per second requested from the camera")
    device: str = section("/dev/video0", help="V4L2 device node (source = v4l2)")
    pipeline: str = section(
        "",
        help="GStreamer source description before the RGB caps, e.g. 'nvarguscamerasrc sensor-id=0 ! "
        "nvvidconv' (source = gstreamer)",
    )
    replay_path: Path = section(  # noqa: RUF009 - Path is immutable
        _DEFAULT_REPLAY,
        help="directory of .jpg/.png images or a .y4m video file (source = replay)",
    )
    replay_fps: float = section(
        0.0, min=0.0, max=240.0, help="replay pacing in frames/s; 0 = as fast as read"
    )
    read_timeout_s: float = section(2.0, min=0.05, max=60.0, help="longest wait for one frame")
