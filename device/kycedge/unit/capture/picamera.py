"""The Raspberry Pi CSI camera through picamera2 (optional dependency, extra ``picamera``).

picamera2 is imported inside :meth:`PiCameraSource.open` only, so the package imports
on machines without it; a missing module is a :class:`CaptureError` with reason
``capture-unavailable`` naming the package to install (Raspberry Pi OS ships it as
``python3-picamera2``).

Each ``read()`` takes one completed request, copies the ``main`` stream out of the
camera's DMA buffer and releases the request at once (in ``finally``), so the camera's
small buffer pool is never pinned by a slow pipeline. The stream is configured as
``BGR888``, which libcamera lays out in memory as R, G, B bytes per pixel (picamera2's
naming follows the DRM fourcc convention), i.e. exactly the RGB the pipeline expects.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

import numpy as np

from kycedge.core.errors import CaptureError
from kycedge.unit.capture.base import CaptureTimeoutError, Frame, SourceClosedError, check_rgb

__all__ = ["PiCameraSource"]


class PiCameraSource:
    """picamera2 source; ``camera_num`` selects the CSI port."""

    def __init__(self, width: int, height: int, fps: int, *, camera_num: int = 0) -> None:
        self._size = (width, height)
        self._fps = fps
        self._camera_num = camera_num
        self._cam: Any = None
        self._seq = 0

    @property
    def name(self) -> str:
        return f"picamera:{self._camera_num}:{self._size[0]}x{self._size[1]}"

    def open(self) -> None:
        self.close()
        try:
            mod = importlib.import_module("picamera2")
        except ImportError as e:
            raise CaptureError(
                "picamera source: expected the picamera2 package (apt install python3-picamera2 "
                f"or pip install 'kycedge[picamera]'), got ImportError: {e}",
                reason="capture-unavailable",
            ) from e
        try:
            cam = mod.Picamera2(self._camera_num)
            config = cam.create_video_configuration(
                main={"format": "BGR888", "size": self._size},
                controls={"FrameRate": float(self._fps)},
                buffer_count=4,
            )
            cam.configure(config)
            cam.start()
        except Exception as e:  # libcamera raises RuntimeError/IndexError/OSError variously
            raise CaptureError(
                f"{self.name}: camera did not start: {type(e).__name__}: {e}",
                reason="capture-unavailable",
            ) from e
        self._cam = cam
        self._seq = 0

    def read(self, timeout_s: float = 2.0) -> Frame:
        cam = self._cam
        if cam is None:
            raise SourceClosedError(f"{self.name}: read() before open()")
        request = _capture_request(cam, timeout_s)
        if request is None:
            raise CaptureTimeoutError(f"{self.name}: no frame within {timeout_s} s")
        try:
            rgb = np.array(request.make_array("main"), dtype=np.uint8, copy=True)
        except Exception as e:
            raise CaptureError(f"{self.name}: frame copy failed: {type(e).__name__}: {e}") from e
        finally:
            request.release()
        self._seq += 1
        return Frame(rgb=check_rgb(rgb, self.name), seq=self._seq)

    def close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is None:
            return
        try:
            cam.stop()
        finally:
            cam.close()


def _capture_request(cam: Any, timeout_s: float) -> Any:
    """``cam.capture_request()`` bounded by ``timeout_s`` (libcamera may wait forever).

    A request that completes after the caller gave up is released at once, so a timeout
    never leaks a camera buffer.
    """
    box: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    abandoned = [False]

    def run() -> None:
        try:
            req = cam.capture_request()
        except BaseException as e:  # handed over to the caller below
            errors.append(e)
            return
        with lock:
            if abandoned[0]:
                req.release()
            else:
                box.append(req)

    t = threading.Thread(target=run, name="picamera-request", daemon=True)
    t.start()
    t.join(timeout_s)
    with lock:
        if errors:
            raise CaptureError(f"camera request failed: {type(errors[0]).__name__}: {errors[0]}")
        if not box:
            abandoned[0] = True
            return None
        return box[0]
