"""Performers: who stands in front of the simulated camera, and what they do over time.

A :class:`Performer` owns a renderer (the synthetic :class:`~.head.Head` or an attack
:class:`~.plane.Plane`) and a timeline of actions. ``on_prompt(code, t_s)`` is how it hears
a challenge prompt (the compliant subject and the print-holding attacker both react after
a human latency; a replay hears nothing); ``pose_at(t_s)`` is where it is at frame time
``t_s``; :class:`PerformerSource` puts it behind the unit's ``FrameSource`` protocol on a
virtual clock (frame ``n`` is at ``n / fps`` seconds; no sleeping), so a session or the
evaluation tool sees exactly what a camera would deliver.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt
from kycedge.lab.liveness_sim.head import Pose
from kycedge.lab.liveness_sim.scene import camera
from kycedge.unit.capture.base import Frame, SourceClosedError

__all__ = ["ACTIONS", "Performer", "PerformerSource", "RecordedSource", "Swapper", "action_pose"]

U8 = npt.NDArray[np.uint8]
ACTIONS = ("liveness-turn-left", "liveness-turn-right", "liveness-blink", "liveness-move-closer")


def _ease(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return 0.5 - 0.5 * math.cos(math.pi * x)


def action_pose(code: str, dt: float, base: Pose, amp: float) -> Pose:
    """The pose ``dt`` seconds into ``code`` (amplitude ``amp`` in 0.8..1.2)."""
    if code in ("liveness-turn-left", "liveness-turn-right"):
        sign = 1.0 if code == "liveness-turn-left" else -1.0
        k = _ease(dt / 0.5) - _ease((dt - 0.8) / 0.5)
        return replace(base, yaw_deg=base.yaw_deg + sign * 26.0 * amp * k)
    if code == "liveness-move-closer":
        k = _ease(dt / 0.8) - _ease((dt - 1.3) / 0.8)
        return replace(base, distance_mm=base.distance_mm * (1.0 - 0.36 * amp * k))
    if code == "liveness-blink":
        k = _ease(dt / 0.12) - _ease((dt - 0.22) / 0.2)
        return replace(base, blink=max(base.blink, k))
    raise ValueError(f"unknown action {code!r}")


ACTION_S = {"liveness-turn-left": 1.3, "liveness-turn-right": 1.3, "liveness-blink": 0.45,
            "liveness-move-closer": 2.1}


@dataclass
class Performer:
    """A renderer plus a timeline; ``complies`` decides whether prompts are followed."""

    render: Callable[[Pose], U8]
    rng: np.random.Generator
    complies: bool = True
    can_blink: bool = True
    base: Pose = field(default_factory=Pose)
    latency_s: tuple[float, float] = (0.25, 0.7)
    spontaneous_blink_s: float = 4.0     # mean time between natural blinks (0: never)
    script: list[tuple[float, str, float]] = field(default_factory=list)  # (start, action, amp)
    _next_blink: float = 0.0

    def __post_init__(self) -> None:
        if self.spontaneous_blink_s > 0 and self.can_blink:
            self._next_blink = float(self.rng.exponential(self.spontaneous_blink_s)) + 0.5

    def on_prompt(self, code: str, t_s: float) -> None:
        if not self.complies:
            return
        if code == "liveness-blink" and not self.can_blink:
            return
        start = t_s + float(self.rng.uniform(*self.latency_s))
        self.script.append((start, code, float(self.rng.uniform(0.85, 1.15))))

    def pose_at(self, t_s: float) -> Pose:
        # natural sway (a person is never still) and spontaneous blinks
        sway = 1.2 * math.sin(0.9 * t_s + self.rng.uniform(-0.05, 0.05))
        pose = replace(self.base, yaw_deg=self.base.yaw_deg + sway,
                       pitch_deg=self.base.pitch_deg + 0.8 * math.sin(0.6 * t_s + 1.0))
        if self.can_blink and self.spontaneous_blink_s > 0:
            while t_s > self._next_blink + 0.45:
                self._next_blink += 0.5 + float(self.rng.exponential(self.spontaneous_blink_s))
            if t_s >= self._next_blink:
                pose = action_pose("liveness-blink", t_s - self._next_blink, pose, 1.0)
        for start, code, amp in self.script:
            dt = t_s - start
            if 0.0 <= dt <= ACTION_S[code]:
                pose = action_pose(code, dt, pose, amp)
        return pose

    def renderer(self, t_s: float) -> Callable[[Pose], U8]:
        """Who is rendered at ``t_s`` (:class:`Swapper` changes it)."""
        return self.render

    def frame(self, t_s: float) -> U8:
        return camera(self.renderer(t_s)(self.pose_at(t_s)), self.rng)


@dataclass
class Swapper(Performer):
    """A face swap: the rightful person's head (``render``) stands for the frontal reference,
    and from ``swap_s`` after the first prompt on (as the first response begins; a turned
    frame is one the attempt does not compare) another live, compliant person (``other``)
    answers the prompts."""

    other: Callable[[Pose], U8] | None = None
    swap_s: float = 0.3
    swapped_at: float | None = None

    def on_prompt(self, code: str, t_s: float) -> None:
        if self.swapped_at is None:
            self.swapped_at = t_s + self.swap_s
        super().on_prompt(code, t_s)

    def renderer(self, t_s: float) -> Callable[[Pose], U8]:
        if self.other is not None and self.swapped_at is not None and t_s >= self.swapped_at:
            return self.other
        return self.render


class PerformerSource:
    """A :class:`Performer` behind the ``FrameSource`` protocol, on a virtual clock."""

    def __init__(self, performer: Performer, *, fps: float = 15.0, t0_s: float = 0.0,
                 record: list[U8] | None = None) -> None:
        self.performer = performer
        self.fps = fps
        self.t0_s = t0_s
        self._seq = -1
        self._open = False
        self.record = record

    @property
    def name(self) -> str:
        return "simulated-performer"

    def open(self) -> None:
        self._open = True
        self._seq = -1

    def now_s(self) -> float:
        """The virtual time of the last frame delivered."""
        return self.t0_s + max(self._seq, 0) / self.fps

    def read(self, timeout_s: float = 2.0) -> Frame:
        if not self._open:
            raise SourceClosedError("simulated performer: not open", reason="source-closed")
        self._seq += 1
        t = self.t0_s + self._seq / self.fps
        rgb = self.performer.frame(t)
        if self.record is not None:
            self.record.append(rgb)
        return Frame(rgb=rgb, seq=self._seq, t_mono=t)

    def close(self) -> None:
        self._open = False


class RecordedSource:
    """Replays recorded frames (an earlier session) at ``fps``, then holds the last frame."""

    def __init__(self, frames: list[U8], *, fps: float = 15.0, offset: int = 0) -> None:
        if not frames:
            raise ValueError("expected at least one recorded frame")
        self.frames = frames
        self.fps = fps
        self.offset = offset
        self._seq = -1
        self._open = False

    @property
    def name(self) -> str:
        return "replayed-session"

    def open(self) -> None:
        self._open = True
        self._seq = -1

    def read(self, timeout_s: float = 2.0) -> Frame:
        if not self._open:
            raise SourceClosedError("replay: not open", reason="source-closed")
        self._seq += 1
        i = min(self._seq + self.offset, len(self.frames) - 1)
        return Frame(rgb=self.frames[i].copy(), seq=self._seq, t_mono=self._seq / self.fps)

    def close(self) -> None:
        self._open = False
