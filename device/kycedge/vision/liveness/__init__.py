"""Liveness: pure decisions and geometry on FaceMesh landmarks (no I/O).

- :mod:`.geometry` -- EAR, yaw, homography / planarity residual, perspective change;
- :mod:`.observe` -- per-frame observations (the one FaceMesh runner for liveness);
- :mod:`.checks` -- the prompt-independent judgement of a clip (``kycedge liveness``);
- :mod:`.challenge` -- the randomised active challenge as a state machine;
- :mod:`.attempt` -- a challenge plus identity continuity (SFace cosine).

The session (:mod:`kycedge.unit.liveness`) drives them; docs/liveness.md is the operator view.
"""
