"""Per-frame liveness observations: FaceMesh on the tracked face, reduced to what the checks use.

An :class:`Observation` holds the frame time, the face box, the 468 mesh points (RAM only:
landmarks are biometric; ``repr`` never shows them) and the derived numbers (yaw, EAR,
inter-ocular distance). :class:`LandmarkObserver` is the one place that runs FaceMesh for
liveness; the session and the offline tools call it with the detector's box and eye points.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from kycedge.core.errors import ModelError
from kycedge.vision.decode import FrameImage
from kycedge.vision.detect import Box
from kycedge.vision.liveness.geometry import eye_aspect_ratio, inter_ocular, yaw_deg
from kycedge.vision.mesh import FaceMesh
from kycedge.vision.models import Manifest
from kycedge.vision.runtime import Model

__all__ = ["LandmarkObserver", "Observation", "Seen", "load_observer", "observation_from_mesh", "tracked"]


@dataclass(frozen=True, repr=False)
class Observation:
    """One frame as the liveness checks see it (``faces`` = faces the detector found)."""

    t_s: float
    faces: int
    box: Box
    points: npt.NDArray[np.float64] = field(repr=False)
    yaw_deg: float
    ear: float
    iod_px: float

    def __repr__(self) -> str:  # never the landmarks
        return f"Observation(t={self.t_s:.3f}, faces={self.faces}, yaw={self.yaw_deg:.1f})"


@dataclass(frozen=True)
class Seen:
    """A frame in which the detector found the tracked face but FaceMesh gave no mesh: the
    face is still there (the tracking rules apply to its box), nothing else is measured. A
    real person turning far loses FaceMesh while the detector keeps the face: pad-video-dev
    live/zubair_real_b, 12 frames in a row (0.8 s) past 47-58 degrees of yaw."""

    t_s: float
    faces: int
    box: Box


def tracked(t_s: float, faces: int, box: Box | None, obs: Observation | None) -> Observation | Seen | None:
    """What the challenge is fed for one frame: the observation, else the detector's box of the
    face (:class:`Seen`), else None (no face)."""
    if obs is not None:
        return obs
    return None if box is None else Seen(t_s=float(t_s), faces=int(faces), box=box)


def observation_from_mesh(t_s: float, faces: int, box: Box, points: npt.ArrayLike) -> Observation | None:
    """The observation for mesh ``points`` (468 x 3), or None if the mesh is degenerate."""
    p = np.asarray(points, dtype=np.float64)
    try:
        return Observation(t_s=float(t_s), faces=int(faces), box=box, points=p,
                           yaw_deg=yaw_deg(p), ear=eye_aspect_ratio(p), iod_px=inter_ocular(p))
    except ValueError:
        return None


class LandmarkObserver:
    """FaceMesh for liveness (about 1.2-1.6 ms per frame at one thread here)."""

    def __init__(self, mesh: FaceMesh) -> None:
        self.mesh = mesh

    def observe(self, rgb: npt.NDArray[np.uint8] | FrameImage, t_s: float, faces: int, box: Box,
                eye_r: npt.ArrayLike, eye_l: npt.ArrayLike) -> Observation | None:
        """Mesh the face in ``box`` (eye points from the detector); None if FaceMesh sees none."""
        try:
            res = self.mesh.landmarks(rgb, box, eye_r, eye_l)
        except ValueError:
            return None
        if res is None:
            return None
        return observation_from_mesh(t_s, faces, box, res.points)


def load_observer(manifest: Manifest, threads: int = 1, *,
                  shared: FaceMesh | None = None) -> LandmarkObserver:
    """The liveness FaceMesh named by the manifest's ``pipeline.liveness_landmarks`` (default
    ``facemesh``), checked against its sha256 like every model.

    ``shared``: the pipeline's own FaceMesh (``Pipeline.mesh``). When the liveness model is the
    pipeline's ``landmarks`` model, that interpreter is reused instead of loading a second copy
    (one FaceMesh in RAM); it must then be used from the pipeline's thread only, as the session
    does (the interpreters are not re-entrant)."""
    name = str(manifest.pipeline.get("liveness_landmarks", "facemesh"))
    entry = manifest.models.get(name)
    if entry is None:
        raise ModelError(f"{manifest.path}: pipeline.liveness_landmarks: expected one of "
                         f"{sorted(manifest.models)}, got {name!r}")
    if shared is not None and manifest.pipeline.get("landmarks") == name:
        return LandmarkObserver(shared)
    try:
        mesh = FaceMesh(Model(manifest.read_checked(entry), threads=threads, name=entry.name))
    except ValueError as e:
        raise ModelError(f"{manifest.path}: {name}: model does not fit the landmarks role: {e}") from e
    return LandmarkObserver(mesh)
