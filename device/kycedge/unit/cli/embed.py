"""``kycedge embed`` and ``kycedge compare``: the vision pipeline from the command line.

``kycedge embed [--threads N] [--gates on|off] [--emit-embedding] [--models DIR] PATH...``
prints one JSON object per image (files or directories, recursive, in input order)::

    {"path", "ok", "reason", "faces", "quality": {...},
     "ms": {"decode", "detect", "align", "refine", "embed", "total"}, ["embedding": [...]]}

Each image goes through exactly the template path a session seals, with one frame
(guide, candidate crop with the manifest's alignment, flip, fusion of one; see
:mod:`kycedge.vision.template`). ``--gates off`` (evaluation) embeds every face found
whatever its quality.

A bad file gives ``"ok": false`` with a specific ``reason`` and the run goes on; the exit
code is 0 when every image produced a template, 1 otherwise.

``--emit-embedding`` is for evaluation only: on a unit, templates leave only signed and
encrypted (see the envelope); never use it in production flows.

``kycedge compare A B`` prints the cosine score, the manifest threshold and the decision.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kycedge.vision.pipeline import Pipeline

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", type=Path, default=None,
                   help="model directory (default: $KYCEDGE_MODELS or the repository's models/)")
    p.add_argument("--threads", type=int, default=1, help="inference threads (default 1)")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "embed", help="face templates of images as JSON lines",
        description="Run the capture pipeline over image files or directories (recursive), one "
        "JSON object per image on stdout, in input order.",
    )
    _add_common(p)
    p.add_argument("--gates", choices=("on", "off"), default="on",
                   help="quality gates (default on; off embeds every face found: evaluation only)")
    p.add_argument("--emit-embedding", action="store_true",
                   help="include the template vector (EVALUATION ONLY: on a unit templates leave "
                   "only signed and encrypted)")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.set_defaults(handler=run_embed)

    c = subparsers.add_parser("compare", help="1:1 match of two face images",
                              description="Embed two images and compare them (cosine vs the "
                              "manifest threshold).")
    _add_common(c)
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    c.set_defaults(handler=run_compare)


def iter_images(paths: list[Path]) -> Iterator[Path]:
    """Files as given; directories expanded recursively (sorted) to their image files."""
    for p in paths:
        if p.is_dir():
            yield from sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
        else:
            yield p


def load_pipeline(args: argparse.Namespace) -> Pipeline:
    from kycedge.core.errors import ConfigError
    from kycedge.vision import default_models_dir
    from kycedge.vision.pipeline import Pipeline, VisionConfig
    from kycedge.vision.quality import QualityConfig

    if args.threads < 1:
        raise ConfigError(f"--threads: expected an integer >= 1, got {args.threads}")
    gates = getattr(args, "gates", "on") == "on"
    config = VisionConfig(threads=args.threads, quality=QualityConfig(enabled=gates))
    return Pipeline.load(args.models or default_models_dir(), config=config)


def embed_one(pipe: Pipeline, path: Path, emit: bool) -> dict[str, Any]:
    """The JSON object for one path (a file that cannot be read within the decoder's size limit
    becomes ok: false with the reason: unreadable-file, not-a-file, file-too-large)."""
    from kycedge.core.errors import ImageError
    from kycedge.vision.decode import read_image_file

    try:
        data = read_image_file(path, pipe.config.decode)
    except ImageError as e:
        return {"path": str(path), "ok": False, "reason": e.reason,
                "message": e.message, "faces": 0, "quality": {}, "ms": {}}
    res = pipe.process_image_bytes(data)
    out: dict[str, Any] = {"path": str(path), **res.to_json()}
    if emit and res.template is not None:
        out["embedding"] = [round(float(v), 7) for v in res.template]
    return out


def run_embed(args: argparse.Namespace) -> int:
    pipe = load_pipeline(args)
    all_ok = True
    for path in iter_images(args.paths):
        out = embed_one(pipe, path, args.emit_embedding)
        all_ok &= bool(out["ok"])
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()
    return 0 if all_ok else 1


def run_compare(args: argparse.Namespace) -> int:
    from kycedge.protocol.match import cosine, decide

    pipe = load_pipeline(args)
    results = [embed_one(pipe, p, True) for p in (args.a, args.b)]
    for r in results:
        if not r["ok"]:
            print(json.dumps({k: r.get(k) for k in ("path", "ok", "reason", "message")}))
            return 1
    score = cosine(results[0]["embedding"], results[1]["embedding"])
    same = decide(score, pipe.threshold)
    print(json.dumps({
        "a": str(args.a), "b": str(args.b), "score": round(score, 6), "threshold": pipe.threshold,
        "far": pipe.far, "decision": "match" if same else "no-match",
        "model_id": pipe.model_id, "model_version": pipe.model_version,
    }))
    return 0
