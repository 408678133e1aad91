"""Build simulated performers from real portraits (the shipped detector + FaceMesh find the face).

:func:`subject` gives the synthetic bona fide head of a portrait; :func:`attacker` the same
portrait printed or on a screen, held by someone who follows the motion prompts with it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
from kycedge.lab.liveness_sim.head import Head, Pose, build_head
from kycedge.lab.liveness_sim.performer import Performer, Swapper
from kycedge.lab.liveness_sim.plane import Plane, make_artefact
from kycedge.lab.liveness_sim.scene import background
from kycedge.vision.decode import FrameImage
from kycedge.vision.liveness.geometry import yaw_deg
from kycedge.vision.liveness.observe import LandmarkObserver
from kycedge.vision.pipeline import Pipeline, choose_subject

__all__ = ["attacker", "lfw_portraits", "portrait_mesh", "subject", "swapper"]

U8 = npt.NDArray[np.uint8]
F64 = npt.NDArray[np.float64]
TARGET_IOD_PX = 42.0
FOCAL_PX = 440.0  # 400 x 300 frames, about 50 degrees across: a webcam


def _downscale(rgb: U8, factor: int) -> U8:
    if factor <= 1:
        return rgb
    h, w = (rgb.shape[0] // factor) * factor, (rgb.shape[1] // factor) * factor
    blocks = rgb[:h, :w].reshape(h // factor, factor, w // factor, factor, 3)
    out: U8 = blocks.mean(axis=(1, 3)).astype(np.uint8)
    return out


def lfw_portraits(lfw: Path, skip: int, n: int) -> list[Path]:
    """The first image of each LFW identity in name order, after skipping ``skip`` identities
    (``lfw`` or its ``images`` folder), up to ``n``: the portraits the evaluation tools use."""
    root = lfw / "images" if (lfw / "images").is_dir() else lfw
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir())[skip:]:
        imgs = sorted(d.glob("*.jpg"))
        if imgs:
            out.append(imgs[0])
        if len(out) >= n:
            break
    return out


def portrait_mesh(pipe: Pipeline, observer: LandmarkObserver, rgb: U8) -> tuple[U8, F64] | None:
    """(the portrait scaled to about 60 px between the eyes, its 468 x 3 mesh), None if no face."""
    for _ in range(2):
        frame = FrameImage(rgb)
        faces = pipe.detector.detect(frame)
        if not faces:
            return None
        f = faces[choose_subject(faces, rgb.shape[1], rgb.shape[0])]
        obs = observer.observe(frame, 0.0, len(faces), f.box, f.keypoints[0], f.keypoints[1])
        if obs is None:
            return None
        factor = int(obs.iod_px // TARGET_IOD_PX)
        if factor <= 1:
            return rgb, obs.points
        rgb = _downscale(rgb, factor)
    return None


def _head(portrait: U8, mesh: F64, bg: U8) -> Head:
    # the customer looks at the camera (the unit asks them to): a portrait taken with the
    # head turned is built turned back by FaceMesh's own yaw of it (its far half mirrored,
    # head.build_head); the pose then faces the camera to within a few degrees
    return build_head(portrait, mesh, background=bg, focal_px=FOCAL_PX, supersample=1.6,
                      yaw_deg=yaw_deg(mesh))


def _base(rng: np.random.Generator) -> Pose:
    off_deg = float(rng.normal(0.0, 3.0))
    return Pose(distance_mm=float(rng.uniform(500, 600)), shift_x_mm=float(rng.uniform(-30, 30)),
                shift_y_mm=float(rng.uniform(-20, 20)), yaw_deg=off_deg)


def subject(portrait: U8, mesh: F64, rng: np.random.Generator, *, width: int = 400,
            height: int = 300) -> Performer:
    bg = background(rng, width, height)
    head = _head(portrait, mesh, bg)
    return Performer(render=head.render, rng=rng, base=_base(rng))


def swapper(portrait: U8, mesh: F64, other: tuple[U8, F64], rng: np.random.Generator, *,
            width: int = 400, height: int = 300) -> Swapper:
    """The rightful person (``portrait``) in front of the camera for the frontal reference, then
    someone else (``other``: portrait and mesh of another identity) answering the prompts in
    the same place (:class:`~.performer.Swapper`)."""
    bg = background(rng, width, height)
    head, impostor = _head(portrait, mesh, bg), _head(other[0], other[1], bg)
    return Swapper(render=head.render, rng=rng, base=_base(rng), other=impostor.render)


def attacker(portrait: U8, mesh: F64, species: str, rng: np.random.Generator, *,
             width: int = 400, height: int = 300) -> Performer:
    """Someone holding the portrait (print or screen) who turns and moves it when prompted."""
    art = make_artefact(portrait, species, rng)
    pad = (art.shape[0] - portrait.shape[0]) // 2
    er = mesh[[33, 133, 159, 145], :2].mean(axis=0)
    el = mesh[[263, 362, 386, 374], :2].mean(axis=0)
    centre = mesh[:, :2].mean(axis=0) + pad
    plane = Plane(artefact=art, iod_px=float(np.hypot(*(el - er))),
                  face_centre=(float(centre[0]), float(centre[1])),
                  background=background(rng, width, height), focal_px=FOCAL_PX)
    base = Pose(distance_mm=float(rng.uniform(450, 600)), shift_x_mm=float(rng.uniform(-30, 30)),
                shift_y_mm=float(rng.uniform(-20, 20)), yaw_deg=float(rng.uniform(-10, 10)),
                pitch_deg=float(rng.uniform(-10, 10)), roll_deg=float(rng.uniform(-5, 5)))
    return Performer(render=plane.render, rng=rng, base=base, can_blink=False,
                     spontaneous_blink_s=0.0)
