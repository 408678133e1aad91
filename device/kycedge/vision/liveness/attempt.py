"""One liveness attempt: the challenge plus identity continuity, fed per frame (pure).

The session (and the evaluation tool, through the same class) feeds every frame's
observation and, where the pipeline produced one, the frame's template. Every template seen
from the first prompt on must match the frontal reference template (SFace cosine >= the
match threshold): the face that answered the prompts is the face that is sealed. After the
last prompt, one more matching frontal template is required (``confirm_s`` to get it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from kycedge.protocol.match import cosine
from kycedge.vision.liveness.challenge import Challenge, ChallengeResult, Step
from kycedge.vision.liveness.observe import Observation, Seen

__all__ = ["Attempt", "AttemptResult"]


@dataclass(frozen=True)
class AttemptResult:
    challenge: ChallengeResult
    passed: bool
    reason: str
    identity_min: float | None       # lowest cosine to the reference during/after
    identity_frames: int


class Attempt:
    def __init__(self, challenge: Challenge, reference: npt.NDArray[np.float32], threshold: float,
                 *, confirm_s: float = 1.5) -> None:
        self.challenge = challenge
        self.reference = reference
        self.threshold = threshold
        self.confirm_s = confirm_s
        self.result: AttemptResult | None = None
        self._min: float | None = None
        self._n = 0
        self._passed_at: float | None = None
        self._confirmed = False

    @property
    def done(self) -> bool:
        return self.result is not None

    def _end(self, passed: bool, reason: str) -> None:
        ch = self.challenge.result
        assert ch is not None
        if not passed and ch.passed:
            ch = replace(ch, passed=False, reason=reason)
        self.result = AttemptResult(challenge=ch, passed=passed, reason=reason,
                                    identity_min=None if self._min is None else round(self._min, 4),
                                    identity_frames=self._n)

    def feed(self, obs: Observation | Seen | None, t_s: float,
             template: npt.NDArray[np.float32] | None = None) -> Step:
        step = Step()
        if self.result is not None:
            return step
        ch = self.challenge
        if not ch.done:
            step = ch.step(obs, t_s)
        if template is not None and (ch.index > 0 or ch.phase in ("prompted", "settle", "done")):
            score = cosine(self.reference, template)
            self._n += 1
            self._min = score if self._min is None else min(self._min, score)
            if score < self.threshold:
                ch.fail("identity-changed", t_s)
                self._end(False, "identity-changed")
                return step
            if ch.done and ch.result is not None and ch.result.passed:
                self._confirmed = True
        if ch.done and ch.result is not None:
            if not ch.result.passed:
                self._end(False, ch.result.reason)
            elif self._confirmed:
                self._end(True, "passed")
            else:
                if self._passed_at is None:
                    self._passed_at = t_s
                if t_s - self._passed_at > self.confirm_s:
                    self._end(False, "identity-unconfirmed")
        return step
