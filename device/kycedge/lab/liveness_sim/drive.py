"""Drive one liveness attempt from a frame source through the shipped pipeline (tools, demo, tests).

The same steps as the unit's session: every frame goes through the pipeline (detect +
gates, a template where the gates pass) and the liveness FaceMesh; the first acceptable
frame's template is the frontal reference; then a fresh challenge (CSPRNG prompts unless
``rng`` is given) runs with identity continuity. Times are the frames' own capture times.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from kycedge.unit.capture.base import FrameSource
from kycedge.vision.liveness.attempt import Attempt
from kycedge.vision.liveness.challenge import Challenge, ChallengeConfig, RandomSource
from kycedge.vision.liveness.observe import LandmarkObserver, Observation, Seen, tracked
from kycedge.vision.pipeline import Pipeline

__all__ = ["Analysed", "Outcome", "analysed_frames", "decide", "observe", "replay_frames", "run_attempt"]


@dataclass
class Outcome:
    decision: str                 # passed | failed | no-decision
    reason: str
    prompts: list[str] = field(default_factory=list)
    decided_at_s: float | None = None
    score: float = 0.0
    frames: int = 0
    completed: int = 0            # prompts completed (the failing prompt is prompts[completed])
    observe_ms: list[float] = field(default_factory=list)
    unanswered: int = 0           # blink prompts the eyes never answered, replaced by a turn

    def to_json(self) -> dict[str, Any]:
        return {"decision": self.decision, "reason": self.reason, "prompts": self.prompts,
                "decided_at_s": self.decided_at_s, "score": self.score, "frames": self.frames,
                "completed": self.completed, "unanswered": self.unanswered}


def observe(pipe: Pipeline, observer: LandmarkObserver, rgb: Any,
            t_s: float) -> tuple[Any, Observation | None, float]:
    """(pipeline result, liveness observation or None, ms the observation added)."""
    res = pipe.process_frame(rgb)
    if res.box is None or res.landmarks is None:
        return res, None, 0.0
    t0 = time.perf_counter()
    obs = observer.observe(rgb, t_s, res.faces, res.box, res.landmarks[0], res.landmarks[1])
    return res, obs, (time.perf_counter() - t0) * 1000.0


# one analysed frame: (capture time, the frame's template where its gates passed, observation
# (or the face's box without a mesh, observe.tracked), ms)
Analysed = tuple[float, np.ndarray | None, Observation | Seen | None, float]


def analysed_frames(source: FrameSource, pipe: Pipeline,
                    observer: LandmarkObserver) -> Generator[Analysed, None, None]:
    """Read ``source`` (opened here, closed when the iterator is) and analyse each frame lazily,
    so a performer hears a prompt before its next frame is rendered."""
    source.open()
    try:
        while True:
            frame = source.read()
            res, obs, ms = observe(pipe, observer, frame.rgb, frame.t_mono)
            yield (frame.t_mono, (res.template if res.ok else None),
                   tracked(frame.t_mono, res.faces, res.box, obs), ms)
    finally:
        source.close()

def replay_frames(recorded: list[np.ndarray], pipe: Pipeline, observer: LandmarkObserver, max_s: float,
                  fps: float = 15.0) -> list[Analysed]:
    """The recording as RecordedSource plays it (frame i at i / fps, the last frame held up to
    ``max_s``), analysed once; a held frame's analysis is the last one's at its own time."""
    out: list[Analysed] = []
    for i, rgb in enumerate(recorded):
        t = i / fps
        res, obs, ms = observe(pipe, observer, rgb, t)
        out.append((t, res.template if res.ok else None, tracked(t, res.faces, res.box, obs), ms))
    _, template, last, ms = out[-1]
    for i in range(len(recorded), int(max_s * fps) + 2):
        t = i / fps
        out.append((t, template, None if last is None else dataclasses.replace(last, t_s=t), ms))
    return out


def run_attempt(source: FrameSource, pipe: Pipeline, observer: LandmarkObserver, cfg: ChallengeConfig,
                hears: Callable[[str, float], None] | None = None, *, rng: RandomSource | None = None,
                max_s: float = 20.0) -> Outcome:
    frames = analysed_frames(source, pipe, observer)
    try:
        return decide(frames, pipe.threshold, cfg, hears, rng=rng, max_s=max_s)
    finally:
        frames.close()


def decide(frames: Iterable[Analysed], threshold: float, cfg: ChallengeConfig,
           hears: Callable[[str, float], None] | None = None, *, rng: RandomSource | None = None,
           max_s: float = 20.0) -> Outcome:
    """One attempt over analysed frames: the first frame with a template is the frontal
    reference, then a fresh challenge with identity continuity (as the session runs it)."""
    attempt: Attempt | None = None
    out = Outcome("no-decision", "no-acceptable-frame")
    t_first: float | None = None
    for t, template, obs, ms in frames:
        t_first = t if t_first is None else t_first
        out.frames += 1
        if isinstance(obs, Observation):
            out.observe_ms.append(ms)
        if attempt is None:
            if template is not None:
                attempt = Attempt(Challenge.draw(cfg, rng), template, threshold)
                out.prompts = list(attempt.challenge.prompts)
                attempt.feed(obs, t, None)
        else:
            step = attempt.feed(obs, t, template)
            for p in step.prompts:
                if hears is not None:
                    hears(p, t)
            if attempt.result is not None:
                r = attempt.result
                out.decision = "passed" if r.passed else "failed"
                out.reason = r.reason
                out.decided_at_s = round(t - t_first, 3)
                out.score = r.challenge.score
                out.completed = r.challenge.completed
                out.prompts = list(r.challenge.prompts)  # as asked (a replaced blink stays in)
                out.unanswered = r.challenge.unanswered
                return out
        if t - t_first > max_s:
            if attempt is not None:
                out.reason = "timeout"
            return out
    if attempt is not None:
        out.reason = "timeout"
    return out
