"""``kycedge demo``: the capture pipeline over the bundled sample faces, then the whole flow.

For each image in ``fixtures/faces/`` it shows the decision (template made, or why not)
and the time spent per stage; then it compares every pair of templates and shows the
genuine (same person) and impostor scores against the shipped threshold.

:func:`vision_demo` is the reusable part (later demos extend the flow with sealing,
the outbox and the carrier by calling it and continuing with its templates).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from kycedge.core.paths import data_dir

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from kycedge.vision.pipeline import Pipeline, PipelineResult


def default_faces_dir() -> Path:
    """The shipped sample faces (``$KYCEDGE_FACES`` if set; see :mod:`kycedge.core.paths`)."""
    return data_dir("faces")


def person_of(path: Path) -> str:
    """Identity from a fixture file name: ``obama2.jpg`` -> ``obama``."""
    return path.stem.rstrip("0123456789") or path.stem


@dataclass
class DemoResult:
    """What :func:`vision_demo` produced: per image results, templates, pair scores."""

    results: dict[Path, PipelineResult] = field(default_factory=dict)
    templates: dict[Path, npt.NDArray[np.float32]] = field(default_factory=dict)
    # (a, b, score, same person, decided match)
    pairs: list[tuple[Path, Path, float, bool, bool]] = field(default_factory=list)

    @property
    def all_correct(self) -> bool:
        """Every genuine pair matched and every impostor pair did not."""
        return all(same == match for _a, _b, _s, same, match in self.pairs)


def vision_demo(pipe: Pipeline, faces_dir: Path, out: TextIO = sys.stdout,
                identity: Callable[[Path], str] = person_of) -> DemoResult:
    """Run the pipeline over the images in ``faces_dir`` and print an explained report."""
    from kycedge.protocol.match import cosine, decide

    demo = DemoResult()
    images = sorted(p for p in faces_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    w = out.write
    w(f"Model {pipe.model_id} ({pipe.model_version}); match threshold {pipe.threshold:.4f} "
      f"(cosine, false accept rate {pipe.far:g})\n\n")
    w("1. One capture per image: decode -> detect -> align -> quality gates -> embed\n")
    w(f"   {'image':<16}{'decision':<34}{'faces':>5}  {'decode':>7}{'detect':>7}{'align':>7}"
      f"{'embed':>7}{'total':>8}  (ms)\n")
    for path in images:
        res = pipe.process_image_bytes(path.read_bytes())
        demo.results[path] = res
        if res.template is not None:
            demo.templates[path] = res.template
        decision = "template made" if res.ok else f"refused: {res.reason}"
        ms = res.ms

        def col(k: str, width: int = 7, ms: Any = ms) -> str:
            return f"{ms[k]:>{width}.1f}" if k in ms else f"{'-':>{width}}"

        w(f"   {path.name:<16}{decision:<34}{res.faces:>5}  {col('decode')}{col('detect')}{col('align')}"
          f"{col('embed')}{col('total', 8)}\n")
        if not res.ok:
            w(f"   {'':<16}operator sees: {res.message}\n")
    w("\n2. Every pair of templates: cosine score vs the threshold\n")
    for a, b in itertools.combinations(sorted(demo.templates), 2):
        score = cosine(demo.templates[a], demo.templates[b])
        same = identity(a) == identity(b)
        match = decide(score, pipe.threshold)
        demo.pairs.append((a, b, score, same, match))
    for kind, want in (("genuine (same person)", True), ("impostor (different people)", False)):
        w(f"   {kind}:\n")
        for a, b, score, same, match in demo.pairs:
            if same is want:
                verdict = "match" if match else "no match"
                flag = "" if match == same else "   <-- WRONG"
                w(f"     {a.name:<14} vs {b.name:<14} score {score:+.3f}  {verdict}{flag}\n")
    n_ok = sum(1 for _a, _b, _s, same, match in demo.pairs if same == match)
    w(f"\n   {n_ok} of {len(demo.pairs)} pairs decided correctly at threshold {pipe.threshold:.4f}.\n")
    return demo


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("demo", help="the whole flow on the bundled sample faces",
                              description="Run the capture pipeline over fixtures/faces (decisions, "
                              "timings, genuine/impostor scores), the liveness challenge (a genuine "
                              "customer, a printed photo, a replay), then the whole flow: a local "
                              "broker, the carrier receiver and the unit daemon doing registrations "
                              "through the local API, receipts, and an outage the outbox rides out.")
    p.add_argument("--models", type=Path, default=None,
                   help="model directory (default: $KYCEDGE_MODELS or the repository's models/)")
    p.add_argument("--faces", type=Path, default=None, help="image folder (default: fixtures/faces)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tpm", default="", metavar="TCTI",
                   help="hold the unit's key in this TPM (e.g. device:/dev/tpmrm0), enrol it by attestation")
    p.add_argument("--tpm-ca", type=Path, action="append", default=[], metavar="PEM",
                   help="a TPM manufacturer CA certificate file the carrier trusts (repeat for the chain)")
    p.add_argument("--hold", type=float, default=0.0, metavar="SECONDS",
                   help="after the flow, keep the unit running this long so a person can use the "
                   "agent's web app (its URL is printed; Ctrl-C ends early)")
    p.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from kycedge.vision import default_models_dir
    from kycedge.vision.pipeline import Pipeline

    pipe = Pipeline.load(args.models or default_models_dir(), threads=args.threads)
    vision_demo(pipe, args.faces or default_faces_dir())
    from kycedge.lab.liveness_demo import liveness_demo  # the challenge: genuine, print, replay

    live = liveness_demo(pipe, args.faces or default_faces_dir())
    from kycedge.lab.demo import run_flow  # then the whole flow: daemon, broker, carrier, receipts

    flow = run_flow(models_dir=args.models, faces_dir=args.faces, tpm_tcti=args.tpm,
                    tpm_ca_certificates=tuple(args.tpm_ca), hold_s=args.hold)
    return 0 if flow.ok and live.ok else 1
