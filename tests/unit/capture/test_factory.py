"""The configured source is built from [capture] without opening any device."""

from __future__ import annotations

from pathlib import Path

from kycedge.unit.capture.base import CaptureConfig, FrameSource
from kycedge.unit.capture.factory import make_source
from kycedge.unit.capture.gstreamer import GStreamerSource
from kycedge.unit.capture.picamera import PiCameraSource
from kycedge.unit.capture.replay import ReplaySource


def test_each_source_kind(tmp_path: Path) -> None:
    r = make_source(CaptureConfig(source="replay", replay_path=tmp_path, width=640, height=480))
    assert isinstance(r, ReplaySource)
    assert isinstance(r, FrameSource)
    assert isinstance(make_source(CaptureConfig(source="picamera")), PiCameraSource)
    v = make_source(CaptureConfig(source="v4l2", device="/dev/video3", width=640, height=480, fps=10))
    assert isinstance(v, GStreamerSource)
    assert v.name == "v4l2:/dev/video3:640x480"
    assert "device=/dev/video3" in v.command
    g = make_source(CaptureConfig(source="gstreamer", pipeline="videotestsrc is-live=true", width=320,
                                  height=240))
    assert isinstance(g, GStreamerSource)
    assert g.command[2:4] == ["videotestsrc", "is-live=true"]
