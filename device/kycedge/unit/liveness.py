"""The session's liveness step: the randomised challenge on the live camera, with retries.

After the session has found its frontal frame(s), :meth:`LivenessGate.run` keeps reading
the same camera: every frame is looked at (``analyze``: the pipeline's detect + gates, the
template where the gates pass, and the liveness FaceMesh), fed to a
:class:`~kycedge.vision.liveness.attempt.Attempt` (prompts from the OS CSPRNG), and each
prompt goes to the app as a ``guidance`` event with a stable code::

    {"event": "guidance", "reason": "liveness-turn-left", "message": "...", "faces": 1,
     "ok": false, "prompt": 1, "of": 3}

A failed attempt with retries left emits ``{"event": "liveness", "state": "retry", "reason",
"attempt"}`` and starts a NEW challenge (new prompts, new pauses); the last failure is the
session's ``failed/liveness-failed`` (nothing is sealed). Frames, landmarks and templates
stay in this call's locals; the returned :class:`LivenessVerdict` carries only the record
that is sealed (method, version, prompts, outcome, score, nonce) and, for the session's
final identity check, the challenge's frontal reference template (RAM only).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kycedge.core.config import section
from kycedge.core.errors import CaptureError, ConfigError
from kycedge.unit.capture.base import CaptureTimeoutError, FrameSource
from kycedge.unit.metrics import LIVENESS
from kycedge.vision.liveness.attempt import Attempt
from kycedge.vision.liveness.challenge import MESSAGES, Challenge, ChallengeConfig
from kycedge.vision.liveness.observe import LandmarkObserver, Observation, Seen, load_observer, tracked
from kycedge.vision.mesh import FaceMesh

__all__ = ["METHOD", "VERSION", "Analyze", "LivenessConfig", "LivenessGate", "LivenessRecord",
           "LivenessVerdict", "pipeline_analyze"]

METHOD = "active-3d"      # randomised prompts + parallax/blink on FaceMesh landmarks
VERSION = "1"

# (rgb, t_s) -> (observation, or the face's box without a mesh, or None; the frame's template
# where its gates passed, or None)
Analyze = Callable[[np.ndarray, float], tuple[Observation | Seen | None, np.ndarray | None]]


@dataclass(frozen=True)
class LivenessConfig:
    """[liveness] the active challenge."""

    enabled: bool = section(True, help="run the challenge before sealing (false: seal as method none)")
    prompts: int = section(3, min=2, max=3, help="prompts per challenge")
    retries: int = section(1, min=0, max=3, help="new challenges after a failed one, per session")
    attempt_timeout_s: float = section(15.0, min=5.0, max=120.0, help="longest one challenge may take")


@dataclass(frozen=True)
class LivenessRecord:
    """What is sealed about the challenge (no landmark, no pixel)."""

    method: str
    version: str
    prompts: tuple[str, ...]
    outcome: str
    passed: bool
    score: float
    nonce: str | None


@dataclass(frozen=True, repr=False)
class LivenessVerdict:
    passed: bool
    reason: str
    message: str
    record: LivenessRecord
    attempts: int
    reference: np.ndarray | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return f"LivenessVerdict(passed={self.passed}, reason={self.reason}, attempts={self.attempts})"


_FAIL_MESSAGES = {
    "planar": "the face moved like a flat picture",
    "identity-changed": "the face changed during the challenge",
    "multiple-faces": "more than one face during the challenge",
    "face-lost": "the face left the camera during the challenge",
}


class LivenessGate:
    def __init__(self, config: LivenessConfig, threshold: float, *,
                 rng: Any = None, challenge: ChallengeConfig | None = None) -> None:
        self.config = config
        self.threshold = threshold
        self.challenge = challenge or ChallengeConfig(prompts=config.prompts)
        self._rng = rng  # None: the OS CSPRNG (secrets.SystemRandom)

    def run(self, source: FrameSource, analyze: Analyze, emit: Callable[[dict[str, Any]], None],
            cancelled: Callable[[], bool], nonce: str | None = None) -> LivenessVerdict:
        reason, score = "no-attempt", 0.0
        prompts: tuple[str, ...] = ()
        attempts = self.config.retries + 1
        for n in range(1, attempts + 1):
            passed, reason, prompts, score, ref = self._attempt(source, analyze, emit, cancelled)
            if passed or reason in ("cancelled", "camera-failed"):
                break
            if n < attempts:
                emit({"event": "liveness", "state": "retry", "reason": reason, "attempt": n + 1,
                      "message": "Let's try that again."})
        record = LivenessRecord(method=METHOD, version=VERSION, prompts=prompts,
                                outcome="passed" if passed else reason, passed=passed,
                                score=score, nonce=nonce)
        LIVENESS.inc(record.outcome)  # kycedge_unit_liveness_outcomes_total{outcome}
        message = "liveness challenge passed" if passed else (
            f"liveness challenge failed ({_FAIL_MESSAGES.get(reason, reason)})")
        return LivenessVerdict(passed=passed, reason=reason, message=message, record=record,
                               attempts=n, reference=ref if passed else None)

    def _attempt(self, source: FrameSource, analyze: Analyze, emit: Callable[[dict[str, Any]], None],
                 cancelled: Callable[[], bool],
                 ) -> tuple[bool, str, tuple[str, ...], float, np.ndarray | None]:
        ch = Challenge.draw(self.challenge, self._rng)
        emit({"event": "guidance", "reason": "liveness-hold-still",
              "message": MESSAGES["liveness-hold-still"], "faces": 1, "ok": False})
        attempt: Attempt | None = None
        ref: np.ndarray | None = None
        t_end = time.monotonic() + self.config.attempt_timeout_s
        asked = 0
        while True:
            if cancelled():
                return False, "cancelled", ch.prompts, 0.0, None
            if time.monotonic() > t_end:
                return False, "timeout", ch.prompts, 0.0, None
            try:
                frame = source.read(timeout_s=2.0)
            except CaptureTimeoutError:
                continue
            except CaptureError:
                return False, "camera-failed", ch.prompts, 0.0, None
            t = frame.t_mono
            try:
                obs, template = analyze(frame.rgb, t)
            finally:
                del frame
            if attempt is None:
                if template is None:
                    ch.step(obs, t)  # baseline runs while we wait for a frontal template
                    if ch.done:
                        res = ch.result
                        assert res is not None
                        return False, res.reason, ch.prompts, 0.0, None
                    continue
                ref = template
                attempt = Attempt(ch, ref, self.threshold)
                step = attempt.feed(obs, t, None)
            else:
                step = attempt.feed(obs, t, template)
            for code in step.prompts:
                asked += 1
                emit({"event": "guidance", "reason": code, "message": MESSAGES[code],
                      "faces": obs.faces if obs is not None else 0, "ok": False,
                      "prompt": asked, "of": len(ch.prompts)})
            if attempt.result is not None:
                r = attempt.result
                return r.passed, r.reason, ch.prompts, r.challenge.score, ref


_observer: tuple[int, LandmarkObserver] | None = None  # one per analyzer (models), the latest


def pipeline_analyze(analyzer: Any) -> Analyze:
    """The per-frame analysis for the gate from a ``kycedge.vision.Pipeline``: its result (box,
    eye points, template where the gates pass) plus the liveness FaceMesh of its manifest."""
    global _observer
    manifest = getattr(analyzer, "manifest", None)
    if manifest is None or not hasattr(analyzer, "process_frame"):
        raise ConfigError("liveness.enabled: expected the vision pipeline (the liveness FaceMesh comes "
                          f"from its model manifest), got {type(analyzer).__name__}; set [liveness] "
                          "enabled = false to seal without a challenge (method none)")
    if _observer is None or _observer[0] != id(analyzer):
        threads = int(getattr(getattr(analyzer, "config", None), "threads", 1))
        mesh = getattr(analyzer, "mesh", None)
        # the pipeline's own FaceMesh when it is the liveness model (one interpreter, not two:
        # the session calls analyze() on the pipeline's thread)
        _observer = (id(analyzer), load_observer(manifest, threads=threads,
                                                 shared=mesh if isinstance(mesh, FaceMesh) else None))
    observer = _observer[1]

    def analyze(rgb: np.ndarray, t_s: float) -> tuple[Observation | Seen | None, np.ndarray | None]:
        res = analyzer.process_frame(rgb)
        if res.box is None or res.landmarks is None:
            return None, None
        obs = observer.observe(rgb, t_s, res.faces, res.box, res.landmarks[0], res.landmarks[1])
        return tracked(t_s, res.faces, res.box, obs), (res.template if res.ok else None)

    return analyze
