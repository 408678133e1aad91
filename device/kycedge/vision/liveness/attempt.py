"""One liveness attempt: the challenge plus identity continuity, fed per frame (pure).

The session (and the evaluation tool, through the same class) feeds every frame's
observation and, where the pipeline produced one, the frame's template. Every template seen
from the first prompt on must match the frontal reference template (SFace cosine >= the
match threshold): the face that answered the prompts is the face that is sealed. After the
last prompt, one more matching frontal template is required (``confirm_s`` to get it).

A template is compared where the face is near frontal: within the challenge's
``frontal_deg`` (the band its baseline allows) of the yaw of the person's hold-still
(FaceMesh's yaw; a frame with the face but no mesh is where the last mesh was). The match
threshold is set on near-frontal pairs, and the same face turned 30 degrees can score below
it (a real person, pad-video-dev zubair_real_b, 0.402 at 33 degrees; the synthetic heads,
docs/liveness.md): such a frame says how far SFace's pose tolerance reaches, not who it
is. A swap still meets compared frames: every prompt ends back at the neutral (the
challenge's settle), and the pauses between prompts are held there (the ``swap`` species
of tools/eval_liveness.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from kycedge.protocol.match import cosine
from kycedge.vision.liveness.challenge import Challenge, ChallengeResult, Step
from kycedge.vision.liveness.observe import Observation, Seen

__all__ = ["Attempt", "AttemptResult", "near_frontal"]


def near_frontal(yaw_deg: float | None, neutral_yaw_deg: float | None, frontal_deg: float) -> bool:
    """Whether a template at FaceMesh's ``yaw_deg`` (the last mesh's, for a frame without one) is
    compared with the reference: within ``frontal_deg`` of the hold-still's yaw, or either yaw
    not measured yet (module docstring)."""
    if yaw_deg is None or neutral_yaw_deg is None:
        return True
    return abs(yaw_deg - neutral_yaw_deg) <= frontal_deg


@dataclass(frozen=True)
class AttemptResult:
    challenge: ChallengeResult
    passed: bool
    reason: str
    identity_min: float | None       # lowest cosine to the reference during/after
    identity_frames: int


class Attempt:
    def __init__(self, challenge: Challenge, reference: npt.NDArray[np.float32], threshold: float,
                 *, confirm_s: float = 1.5, frontal_only: bool = True) -> None:
        self.challenge = challenge
        self.reference = reference
        self.threshold = threshold
        self.confirm_s = confirm_s
        self.frontal_only = frontal_only  # False: every template is compared
        self._last_yaw: float | None = None
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

    def _comparable(self, obs: Observation | Seen | None) -> bool:
        """Near frontal (module docstring). A frame with the face but no mesh (a head turned
        far loses FaceMesh first) is where the last measured frame was (:meth:`feed`)."""
        return not self.frontal_only or near_frontal(self._last_yaw, self.challenge.neutral_yaw_deg,
                                                     self.challenge.cfg.frontal_deg)

    def feed(self, obs: Observation | Seen | None, t_s: float,
             template: npt.NDArray[np.float32] | None = None) -> Step:
        step = Step()
        if self.result is not None:
            return step
        if isinstance(obs, Observation):
            self._last_yaw = obs.yaw_deg
        ch = self.challenge
        if not ch.done:
            step = ch.step(obs, t_s)
        if template is not None and (ch.index > 0 or ch.phase in ("prompted", "settle", "done")) \
                and self._comparable(obs):
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
