"""``kycedge liveness [--json] [--fps F] [--models DIR] CLIP...``: the prompt-independent checks offline.

A clip is a directory of frames (``.jpg``/``.png``, name order; ``--fps``, default 15, gives
their times) or a ``.y4m`` file (its own frame rate). Every frame goes through the shipped
pipeline (detector, subject choice) and the liveness FaceMesh; the clip is judged by
:func:`kycedge.vision.liveness.checks.judge` (3-D parallax under whatever head turn occurs,
perspective under approach, blinks against the person's own baseline). Output, one line
per clip, in input order (``--json``: one JSON object)::

    {"path", "decision": "bona-fide" | "attack" | "no-decision", "reason", "score", "measures"}

``score`` is the deciding cue over its threshold (>= 1 is 3-D). The passive screen cues
(``--screen-cues``, :mod:`kycedge.vision.liveness.screen`) run on every 5th frame with a face
and may only refuse: a clip whose face shows a screen's colour is ``attack`` with reason
``screen-blue_shift`` (``score``: how far past the threshold) whatever its geometry, because a
replayed video of a turning head has real parallax. On the same sampled frames the
pipeline's second detector (YuNet) counts the faces (boxes apart from the tracked face's,
:func:`kycedge.vision.detect.distinct_faces`): a second face in at least 3 of them (a
phone held up beside its holder) is ``attack`` with reason ``multiple-faces``, the clip
judge's form of the session's one-face rule (rule ``multiple_faces``); a screen's window around
the face (two straight side edges and one below the face, :mod:`kycedge.vision.liveness.window`)
is ``attack`` with reason ``screen-window``. An unreadable clip gives
``no-decision`` with reason ``unreadable-clip`` and the run goes on. Frames stay in RAM;
nothing is written. Exit code 0 (the decisions are data, not errors).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from kycedge.vision.liveness.observe import LandmarkObserver
    from kycedge.vision.liveness.screen import ScreenConfig
    from kycedge.vision.pipeline import Pipeline

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
MAX_FRAMES = 3000


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "liveness", help="judge clips with the prompt-independent liveness checks",
        description="Judge each clip (a directory of frames or a .y4m file) by 3-D parallax, "
        "perspective and blinks on the FaceMesh landmarks; one line per clip.",
    )
    p.add_argument("--models", type=Path, default=None,
                   help="model directory (default: $KYCEDGE_MODELS or the repository's models/)")
    p.add_argument("--threads", type=int, default=1, help="inference threads (default 1)")
    p.add_argument("--fps", type=float, default=15.0, help="frame rate of frame directories (default 15)")
    p.add_argument("--json", action="store_true", help="one JSON object per clip")
    p.add_argument("--screen-cues", default=None, metavar="LIST",
                   help="passive cues that may refuse a clip, comma-separated from blue_shift, "
                   "multiple_faces, window, saturation_mean, scaled_sharpness, bezel, or 'none' "
                   "(default blue_shift,multiple_faces,window; see docs/liveness.md)")
    p.add_argument("clips", nargs="+", type=Path, metavar="CLIP")
    p.set_defaults(handler=run_liveness)


def _frames(path: Path, fps: float) -> Iterator[tuple[float, np.ndarray]]:
    from kycedge.core.errors import CaptureError
    from kycedge.unit.capture.replay import Y4MReader
    from kycedge.vision.decode import decode_image

    if path.is_dir():
        files = sorted(q for q in path.iterdir() if q.is_file() and q.suffix.lower() in FRAME_SUFFIXES)
        for i, f in enumerate(files[:MAX_FRAMES]):
            yield i / fps, decode_image(f.read_bytes())
        return
    if path.suffix.lower() != ".y4m":
        raise CaptureError(f"{path}: expected a directory of frames or a .y4m file", reason="unreadable-clip")
    reader = Y4MReader(path)
    try:
        rate = reader.fps or fps
        for i, rgb in enumerate(reader.frames()):
            if i >= MAX_FRAMES:
                break
            yield i / rate, rgb
    finally:
        reader.close()


def judge_clip(path: Path, pipe: Pipeline, observer: LandmarkObserver, fps: float = 15.0,
               screen: ScreenConfig | None = None) -> dict[str, Any]:
    """The output object for one clip. With ``screen``, the passive screen cues run on every
    ``screen.every``-th frame with a face, and a screen found refuses the clip whatever the
    geometry says (a replayed video of a turning head has real parallax)."""
    from kycedge.core.errors import KycEdgeError
    from kycedge.vision.decode import FrameImage
    from kycedge.vision.detect import distinct_faces
    from kycedge.vision.liveness.checks import judge
    from kycedge.vision.liveness.screen import ScreenSampler

    obs = []
    sampler = ScreenSampler(screen) if screen is not None else None
    try:
        for t, rgb in _frames(path, fps):
            res = pipe.process_frame(rgb)
            if res.box is None or res.landmarks is None:
                continue
            if sampler is not None:
                # the second detector (YuNet, finer on small faces) counts the faces of the
                # sampled frames: a phone held up beside its holder is a second face
                faces = (distinct_faces([f.box for f in pipe.fallback.detect(FrameImage(rgb))], res.box)
                         if sampler.due and pipe.fallback is not None else None)
                sampler.offer(rgb, res.box, faces)
            o = observer.observe(rgb, t, res.faces, res.box, res.landmarks[0], res.landmarks[1])
            if o is not None:
                obs.append(o)
    except (KycEdgeError, OSError) as e:
        reason = getattr(e, "reason", "unreadable-clip")
        return {"path": str(path), "decision": "no-decision", "reason": "unreadable-clip",
                "score": 0.0, "measures": {"error": f"{reason}: {getattr(e, 'message', e)}"}}
    ev = judge(obs)
    out = {"path": str(path), "decision": ev.decision, "reason": ev.reason, "score": ev.score,
           "measures": ev.measures}
    if sampler is not None:
        sc = sampler.judge()
        out["measures"] = {**ev.measures, "screen": sc.measures}
        if sc.decision == "attack":
            out.update(decision="attack", reason=sc.reason, score=sc.score)
    return out


def screen_config(spec: str | None) -> ScreenConfig:
    """``--screen-cues``: a comma-separated list of rule names, or ``none``; None: the default
    rules (:data:`kycedge.vision.liveness.screen.DEFAULT_RULES`)."""
    from kycedge.core.errors import ConfigError
    from kycedge.vision.liveness.screen import RULES, ScreenConfig

    if spec is None:
        return ScreenConfig()
    names = tuple(n.strip() for n in spec.split(",") if n.strip())
    if names == ("none",):
        return ScreenConfig(rules=())
    unknown = [n for n in names if n not in RULES]
    if unknown or not names:
        raise ConfigError(f"--screen-cues: expected 'none' or names from {sorted(RULES)}, got {spec!r}")
    return ScreenConfig(rules=names)


def run_liveness(args: argparse.Namespace) -> int:
    from kycedge.core.errors import ConfigError
    from kycedge.vision import default_models_dir
    from kycedge.vision.liveness.observe import load_observer
    from kycedge.vision.pipeline import Pipeline

    if args.threads < 1:
        raise ConfigError(f"--threads: expected an integer >= 1, got {args.threads}")
    if not 0.5 <= args.fps <= 240:
        raise ConfigError(f"--fps: expected a number in [0.5, 240], got {args.fps}")
    screen = screen_config(args.screen_cues)
    pipe = Pipeline.load(args.models or default_models_dir(), threads=args.threads)
    observer = load_observer(pipe.manifest, threads=args.threads)
    for clip in args.clips:
        out = judge_clip(clip, pipe, observer, args.fps, screen)
        if args.json:
            line = json.dumps(out)
        else:
            line = f"{out['path']}: {out['decision']} ({out['reason']}, score {out['score']})"
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    return 0
