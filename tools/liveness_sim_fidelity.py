#!/usr/bin/env python3
"""How the synthetic head's turns read to FaceMesh: with and without the mirrored far half.

    .venv/bin/python tools/liveness_sim_fidelity.py --lfw ../shared/data/lfw-dev --skip 300 --portraits 80

SIMULATED (``"data": "simulated"``): per portrait (the first image of each LFW identity in
name order after ``--skip``), the synthetic head (lab/liveness_sim) is built twice: as the
simulator builds it (frontal; from ``mirror_min_deg`` of the portrait's own yaw its far half
is the near half mirrored) and without the mirror (``mirror_min_deg=None``: the far cheek is
whatever the portrait showed of it, edge-on). Each is rendered facing the camera and turned
``--turn-deg`` both ways at 550 mm; FaceMesh's yaw change for each turn is the *read* turn.
``hidden`` is the turn that brings the portrait's far cheek towards the camera, ``other`` the
one back towards the photo's own pose. A frame where the pipeline finds no face or FaceMesh
gives no mesh is *lost*. Summaries per group of portraits (own yaw below / from
``mirror_min_deg``): the median read turn, the lowest three, how many read below the
challenge's completion (``turn_deg``) plus 3 degrees, and how many were lost. Only yaw
numbers are printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
from kycedge.lab.liveness_sim.build import FOCAL_PX, lfw_portraits, portrait_mesh
from kycedge.lab.liveness_sim.drive import observe
from kycedge.lab.liveness_sim.head import MIRROR_MIN_DEG, Head, Pose, build_head
from kycedge.lab.liveness_sim.scene import background, camera
from kycedge.vision import default_models_dir
from kycedge.vision.decode import decode_image
from kycedge.vision.liveness.challenge import ChallengeConfig
from kycedge.vision.liveness.geometry import yaw_deg
from kycedge.vision.liveness.observe import LandmarkObserver, load_observer
from kycedge.vision.pipeline import Pipeline


def _read(pipe: Pipeline, observer: LandmarkObserver, head: Head, yaw: float) -> float | None:
    rgb = camera(head.render(Pose(yaw_deg=yaw, distance_mm=550.0)), np.random.default_rng(1))
    _, o, _ = observe(pipe, observer, rgb, 0.0)
    return None if o is None else o.yaw_deg


def read_turns(pipe: Pipeline, observer: LandmarkObserver, head: Head, turn_deg: float,
               own_yaw: float) -> dict[str, float | None]:
    """FaceMesh's yaw change for a turn towards the portrait's hidden cheek and back the other way."""
    y0 = _read(pipe, observer, head, 0.0)
    s = 1.0 if own_yaw > 0 else -1.0
    # a positive own yaw hid the subject's left cheek; a negative pose yaw turns it to the camera
    out: dict[str, float | None] = {}
    for name, yaw in (("hidden", -s * turn_deg), ("other", s * turn_deg)):
        y = _read(pipe, observer, head, yaw)
        out[name] = None if y is None or y0 is None else round(abs(y - y0), 2)
    return out


def summarise(rows: list[dict[str, Any]], below_deg: float) -> dict[str, Any]:
    """Per build (mirrored / unmirrored), group (own yaw below / from the mirror limit) and turn."""
    out: dict[str, Any] = {}
    for build in ("mirrored", "unmirrored"):
        for group, from_limit in ((f"own_yaw_below_{MIRROR_MIN_DEG:g}", False),
                                  (f"own_yaw_from_{MIRROR_MIN_DEG:g}", True)):
            for turn in ("hidden", "other"):
                vals = [r[build][turn] for r in rows
                        if (abs(r["own_yaw_deg"]) >= MIRROR_MIN_DEG) == from_limit]
                got = sorted(v for v in vals if v is not None)
                out.setdefault(build, {}).setdefault(group, {})[turn] = {
                    "portraits": len(vals), "lost": len(vals) - len(got),
                    "median_read_deg": round(statistics.median(got), 2) if got else None,
                    "lowest_read_deg": got[:3], f"read_below_{below_deg:g}": sum(v < below_deg for v in got)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lfw", type=Path, default=Path("../shared/data/lfw-dev"))
    ap.add_argument("--skip", type=int, default=300)
    ap.add_argument("--portraits", type=int, default=80)
    ap.add_argument("--turn-deg", type=float, default=26.0, help="the rendered turn (the performer's mean)")
    ap.add_argument("--models", type=Path, default=None)
    args = ap.parse_args(argv)
    pipe = Pipeline.load(args.models or default_models_dir(), threads=1)
    observer = load_observer(pipe.manifest, threads=1)
    bg = background(np.random.default_rng(0), 400, 300)
    rows: list[dict[str, Any]] = []
    no_face = 0
    for path in lfw_portraits(args.lfw, args.skip, args.portraits):
        pm = portrait_mesh(pipe, observer, decode_image(path.read_bytes()))
        if pm is None:
            no_face += 1
            continue
        portrait, mesh = pm
        own = yaw_deg(mesh)
        row: dict[str, Any] = {"portrait": path.parent.name, "own_yaw_deg": round(own, 2)}
        for build, limit in (("mirrored", MIRROR_MIN_DEG), ("unmirrored", None)):
            head = build_head(portrait, mesh, background=bg, focal_px=FOCAL_PX, supersample=1.6,
                              yaw_deg=own, mirror_min_deg=limit)
            row[build] = read_turns(pipe, observer, head, args.turn_deg, own)
        rows.append(row)
    below = ChallengeConfig().turn_deg + 3.0
    json.dump({"tool": "liveness_sim_fidelity", "data": "simulated", "turn_deg": args.turn_deg,
               "mirror_min_deg": MIRROR_MIN_DEG, "portraits_without_face": no_face,
               "summary": summarise(rows, below), "portraits": rows}, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
