"""Frame sources behind one protocol.

Every camera the unit can own (the Pi's CSI camera through picamera2, a V4L2/USB camera
or a Jetson CSI camera through a GStreamer pipeline, a replay of image files or a raw
video file for demos and tests) is a :class:`FrameSource`: ``open()``, ``read()`` →
:class:`Frame`, ``close()``. A frame is an ``H×W×3`` ``uint8`` RGB array **owned by the
caller**: every source copies pixels out of camera/driver buffers and releases them
before returning, so a slow pipeline never pins a camera buffer.

Frames live in RAM only. No source writes a frame anywhere, and a ``Frame``'s ``repr``
never shows pixel values (so a stray log line cannot leak image data).

Build a source from config with :func:`open_source` (``kycedge.unit.capture.factory``).
"""

from __future__ import annotations

from kycedge.unit.capture.base import CaptureConfig, Frame, FrameSource, SourceClosedError

__all__ = ["CaptureConfig", "Frame", "FrameSource", "SourceClosedError"]
