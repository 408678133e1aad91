"""picamera2 source against a fake picamera2 module: copy out, release at once."""

from __future__ import annotations

import sys
import types
from typing import Any, ClassVar

import numpy as np
import pytest
from kycedge.core.errors import CaptureError
from kycedge.unit.capture.fake import FakeCamera
from kycedge.unit.capture.picamera import PiCameraSource


class FakeRequest:
    def __init__(self, log: list[str], arr: np.ndarray, fail: bool) -> None:
        self.log, self.arr, self.fail = log, arr, fail

    def make_array(self, stream: str) -> np.ndarray:
        assert stream == "main"
        if self.fail:
            raise RuntimeError("dma mapping failed")
        return self.arr

    def release(self) -> None:
        self.log.append("release")


class FakePicamera2:
    instances: ClassVar[list[FakePicamera2]] = []

    def __init__(self, num: int) -> None:
        self.log: list[str] = []
        self.buffer = np.zeros((4, 4, 3), np.uint8)
        self.fail_next = False
        self.config: dict[str, Any] = {}
        FakePicamera2.instances.append(self)

    def create_video_configuration(self, **kw: Any) -> dict[str, Any]:
        return kw

    def configure(self, cfg: dict[str, Any]) -> None:
        self.config = cfg

    def start(self) -> None:
        self.log.append("start")

    def capture_request(self) -> FakeRequest:
        self.log.append("capture")
        return FakeRequest(self.log, self.buffer, self.fail_next)

    def stop(self) -> None:
        self.log.append("stop")

    def close(self) -> None:
        self.log.append("close")


@pytest.fixture
def fake_module(monkeypatch: pytest.MonkeyPatch) -> type[FakePicamera2]:
    mod = types.ModuleType("picamera2")
    mod.Picamera2 = FakePicamera2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2", mod)
    FakePicamera2.instances = []
    return FakePicamera2


def test_frames_are_copied_out_and_requests_released(fake_module: type[FakePicamera2]) -> None:
    src = PiCameraSource(4, 4, 10)
    src.open()
    cam = fake_module.instances[0]
    assert cam.config["main"] == {"format": "BGR888", "size": (4, 4)}
    f = src.read()
    assert cam.log[-2:] == ["capture", "release"]
    cam.buffer[:] = 99  # the camera reuses its buffer: our frame must not change
    assert int(f.rgb.max()) == 0
    cam.fail_next = True
    with pytest.raises(CaptureError, match="dma mapping failed"):
        src.read()
    assert cam.log[-1] == "release"  # released even when the copy fails
    src.close()
    assert cam.log[-2:] == ["stop", "close"]


def test_missing_picamera2_is_capture_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(CaptureError, match="expected the picamera2 package") as e:
        PiCameraSource(4, 4, 10).open()
    assert e.value.reason == "capture-unavailable"


def test_fake_camera_behaves_like_a_source() -> None:
    cam = FakeCamera([np.zeros((2, 2, 3), np.uint8)], fail_after=1)
    cam.open()
    cam.read()
    with pytest.raises(CaptureError):
        cam.read()
    cam.close()
    assert (cam.opens, cam.closes) == (1, 1)
