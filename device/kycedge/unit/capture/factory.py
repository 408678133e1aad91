"""Build the configured :class:`FrameSource` from a :class:`CaptureConfig`."""

from __future__ import annotations

from kycedge.unit.capture.base import CaptureConfig, FrameSource

__all__ = ["make_source"]


def make_source(cfg: CaptureConfig) -> FrameSource:
    """The source named by ``cfg.source`` (not yet opened)."""
    if cfg.source == "replay":
        from kycedge.unit.capture.replay import ReplaySource

        return ReplaySource(cfg.replay_path, fps=cfg.replay_fps, max_size=(cfg.width, cfg.height))
    if cfg.source == "picamera":
        from kycedge.unit.capture.picamera import PiCameraSource

        return PiCameraSource(cfg.width, cfg.height, cfg.fps)
    from kycedge.unit.capture.gstreamer import GStreamerSource, v4l2_pipeline

    if cfg.source == "v4l2":
        return GStreamerSource(
            v4l2_pipeline(cfg.device, cfg.width, cfg.height, cfg.fps), cfg.width, cfg.height,
            label=f"v4l2:{cfg.device}",
        )
    return GStreamerSource(cfg.pipeline, cfg.width, cfg.height)
