"""From image bytes or an RGB frame to an L2-normalised face template.

decode (untrusted bytes) -> detect -> choose the subject -> refine landmarks -> align ->
quality gates -> embed. Every outcome is a :class:`PipelineResult`; bad input never
raises out of :meth:`Pipeline.process_image_bytes` / :meth:`Pipeline.process_frame`
(only :meth:`Pipeline.load` raises, with :class:`~kycedge.core.errors.ModelError`).

Usage::

    pipe = Pipeline.load(Path("models"), threads=1)
    res = pipe.process_image_bytes(Path("face.jpg").read_bytes())
    if res.ok:
        score = cosine(res.template, other_template)
        same = decide(score, pipe.threshold)
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from kycedge.core.config import section
from kycedge.core.errors import ImageError, ModelError
from kycedge.vision.align import SFACE_SIZE, alignment_matrix, conventional_points
from kycedge.vision.decode import DecodeConfig, FrameImage, decode_image, warp_affine
from kycedge.vision.detect import BlazeFaceDetector, Face, YuNetDetector, faces_apart
from kycedge.vision.embed import Embedder
from kycedge.vision.mesh import FaceMesh, MeshResult
from kycedge.vision.models import Manifest, load_manifest
from kycedge.vision.quality import MESSAGES, QualityConfig, assess, dominance, measured_region
from kycedge.vision.runtime import Model
from kycedge.vision.template import Candidate, capture_score, fuse, fusion_weights

__all__ = ["Guide", "Pipeline", "PipelineResult", "VisionConfig", "choose_subject"]


@dataclass(frozen=True)
class VisionConfig:
    """The ``[vision]`` config section."""

    threads: int = section(1, min=1, max=16, help="inference threads per model")
    detector_score: float = section(0.5, min=0.05, max=0.99, help="lowest detector confidence")
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)


@dataclass(frozen=True)
class PipelineResult:
    """The outcome for one image or frame.

    ``reason`` is ``"ok"`` or a stable code (decode: ``empty-image``, ``truncated-image``,
    ``unknown-format``, ``image-too-small``, ``image-too-large``, ``corrupt-image``,
    ``file-too-large``, ``bad-frame``; detection: ``no-face``; quality: ``multiple-faces``,
    ``move-closer``, ``face-the-camera``, ``too-dark``, ``too-bright``, ``blurry``;
    ``pipeline-error`` for numeric corner cases such as degenerate landmarks).
    ``template`` is float32, 1-D, L2-normalised, present only when ``ok``.
    ``box``/``landmarks`` locate the chosen face (image pixels) when one was found.
    ``faces`` counts distinct faces: a detection overlapping the chosen face's box is that
    face seen twice (:func:`~kycedge.vision.detect.distinct_faces`).
    """

    ok: bool
    reason: str
    message: str
    faces: int
    quality: Mapping[str, float]
    ms: Mapping[str, float]
    template: npt.NDArray[np.float32] | None = None
    box: tuple[float, float, float, float] | None = None
    landmarks: npt.NDArray[np.float64] | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready summary without the template (templates leave the unit sealed)."""
        return {
            "ok": self.ok,
            "reason": self.reason,
            "message": self.message,
            "faces": self.faces,
            "quality": dict(self.quality),
            "ms": {k: round(v, 3) for k, v in self.ms.items()},
        }


@dataclass(frozen=True)
class Guide:
    """The per-frame guidance outcome: detection and quality gates, no embedding.

    ``reason``/``message``/``faces``/``quality`` as in :class:`PipelineResult`; ``score`` is
    :func:`~kycedge.vision.template.capture_score` of the measures (0 when no face);
    ``face`` (the chosen detection, RAM only) is set when ``ok``, for :meth:`Pipeline.candidate`.
    """

    ok: bool
    reason: str
    message: str
    faces: int
    quality: Mapping[str, float]
    ms: Mapping[str, float]
    score: float = 0.0
    box: tuple[float, float, float, float] | None = None
    landmarks: npt.NDArray[np.float64] | None = field(default=None, repr=False)
    face: Face | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready summary (no landmarks)."""
        return {"ok": self.ok, "reason": self.reason, "message": self.message, "faces": self.faces,
                "quality": dict(self.quality), "score": round(self.score, 4),
                "ms": {k: round(v, 3) for k, v in self.ms.items()}}


def choose_subject(faces: list[Face], width: int, height: int) -> int:
    """Index of the subject: the largest face, discounted by its distance from the centre.

    Score = area x (1 - 0.5 x distance to the image centre / half diagonal), so a face
    near the centre wins over a slightly larger one at the edge.
    """
    if not faces:
        raise ValueError("expected at least one face")
    half_diag = max(math.hypot(width, height) / 2.0, 1e-6)

    def score(f: Face) -> float:
        cx, cy = f.center
        d = math.hypot(cx - width / 2.0, cy - height / 2.0) / half_diag
        return f.area * (1.0 - 0.5 * min(d, 1.0))

    return max(range(len(faces)), key=lambda i: score(faces[i]))


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def _fail(reason: str, message: str, faces: int, ms: dict[str, float], t_start: float,
          quality: Mapping[str, float] | None = None, box: tuple[float, float, float, float] | None = None,
          landmarks: npt.NDArray[np.float64] | None = None) -> PipelineResult:
    ms["total"] = _ms(t_start)
    return PipelineResult(ok=False, reason=reason, message=message, faces=faces,
                          quality=MappingProxyType(dict(quality or {})), ms=MappingProxyType(ms),
                          box=box, landmarks=landmarks)


def _setting(manifest: Manifest, key: str, kind: type[Any], default: Any) -> Any:
    value = manifest.pipeline.get(key, default)
    if type(value) is not kind:
        raise ModelError(f"{manifest.path}: pipeline.{key}: expected {kind.__name__}, got {value!r}")
    return value


class Pipeline:
    """Loaded models plus settings; one instance per thread (the interpreters are not re-entrant)."""

    def __init__(self, manifest: Manifest, detector: BlazeFaceDetector | YuNetDetector,
                 mesh: FaceMesh | None, embedder: Embedder, config: VisionConfig,
                 calibrating: bool = False) -> None:
        self.manifest = manifest
        self.detector = detector
        self.mesh = mesh
        self.embedder = embedder
        self.config = config
        self.model_id, self.model_version = manifest.identity
        self.mesh_passes = 1
        self.fusion_weighted = False
        self.mesh_convention = False  # FaceMesh points moved to the detector convention (align.py)
        self.fallback: YuNetDetector | None = None  # a still image's second detector (never per frame)
        if calibrating and "threshold" not in manifest.matching:
            self.threshold, self.far = math.nan, math.nan
        else:
            self.threshold = manifest.threshold
            self.far = manifest.far

    @classmethod
    def load(cls, models_dir: Path, threads: int = 1, config: VisionConfig | None = None,
             overrides: Mapping[str, Any] | None = None, calibrating: bool = False) -> Pipeline:
        """Read ``models_dir/manifest.json``, check every model's sha256, build the interpreters.

        ``threads`` is used when no ``config`` is given (otherwise ``config.threads``).
        ``overrides`` replaces keys of the manifest's ``pipeline`` section (``detector``,
        ``detector_kind``, ``landmarks``, ``flip_average``, ``mesh_convention``,
        ``fallback_detector``): for evaluation runs only.
        ``calibrating`` tolerates a manifest without ``matching.threshold`` (the calibration
        run that writes it); ``threshold`` and ``far`` are then NaN and ``decide`` refuses them.
        """
        cfg = config if config is not None else VisionConfig(threads=threads)
        manifest = load_manifest(Path(models_dir))
        if overrides:
            manifest = replace(manifest, pipeline={**manifest.pipeline, **overrides})
        settings = manifest.pipeline

        def model(role: str, deferred: bool = False) -> Model | None:
            entry = manifest.role(role)
            if entry is None:
                return None
            return Model(manifest.read_checked(entry), threads=cfg.threads, name=entry.name,
                         deferred=deferred)

        det_model, emb_model = model("detector"), model("embedder")
        if det_model is None or emb_model is None:
            raise ModelError(f"{manifest.path}: pipeline: expected a detector and an embedder")
        kind = str(settings.get("detector_kind", "blazeface"))
        try:
            detector: BlazeFaceDetector | YuNetDetector
            if kind == "blazeface":
                detector = BlazeFaceDetector(det_model, score_threshold=cfg.detector_score)
            elif kind == "yunet":
                detector = YuNetDetector(det_model, score_threshold=max(cfg.detector_score, 0.6))
            else:
                raise ModelError(f"{manifest.path}: pipeline.detector_kind: expected 'blazeface' "
                                 f"or 'yunet', got {kind!r}")
            mesh_model = model("landmarks")
            mesh = FaceMesh(mesh_model) if mesh_model is not None else None
            embedder = Embedder(emb_model, flip_average=_setting(manifest, "flip_average", bool, False))
        except ValueError as e:
            raise ModelError(f"{manifest.path}: model does not fit its role: {e}") from e
        pipe = cls(manifest, detector, mesh, embedder, cfg, calibrating=calibrating)
        pipe.mesh_passes = _setting(manifest, "mesh_passes", int, 1)
        if pipe.mesh_passes not in (1, 2):
            raise ModelError(f"{manifest.path}: pipeline.mesh_passes: expected 1 or 2, "
                             f"got {pipe.mesh_passes}")
        fusion = _setting(manifest, "fusion", str, "mean")
        if fusion not in ("quality-weighted", "mean"):
            raise ModelError(f"{manifest.path}: pipeline.fusion: expected 'quality-weighted' or 'mean', "
                             f"got {fusion!r}")
        pipe.fusion_weighted = fusion == "quality-weighted"
        pipe.mesh_convention = _setting(manifest, "mesh_convention", bool, False)
        # None when absent or "none"; allocated at its first use (most processes never run it)
        fb_model = model("fallback_detector", deferred=True)
        if fb_model is not None:
            try:
                pipe.fallback = YuNetDetector(fb_model, score_threshold=max(cfg.detector_score, 0.6))
            except ValueError as e:
                raise ModelError(f"{manifest.path}: pipeline.fallback_detector: expected a YuNet "
                                 f"model: {e}") from e
        return pipe

    # ---- the single-image template path (embed, evaluation, ID photos, self-test) ----------
    def process_image_bytes(self, data: bytes) -> PipelineResult:
        """Decode untrusted bytes (JPEG/PNG): guide, one candidate, its template (K = 1).

        A still image has no next frame: when BlazeFace finds no face and the manifest names
        a ``fallback_detector``, that detector looks once more (ADR 0012).
        """
        t0 = time.perf_counter()
        try:
            rgb = decode_image(data, self.config.decode)
        except ImageError as e:
            return _fail(e.reason, e.message, 0, {"decode": _ms(t0)}, t0)
        return self._single(rgb, {"decode": _ms(t0)}, t0, still=True)

    def process_frame(self, rgb: npt.NDArray[np.uint8]) -> PipelineResult:
        """One HxWx3 uint8 RGB frame in RAM through the same path as a photo (K = 1).

        A frame is part of a stream (the liveness gate analyses every frame with it): no
        fallback detector when BlazeFace finds no face, unlike :meth:`process_image_bytes`.
        """
        t0 = time.perf_counter()
        bad = self._bad_frame(rgb)
        if bad is not None:
            return _fail("bad-frame", bad, 0, {"decode": 0.0}, t0)
        return self._single(np.ascontiguousarray(rgb), {"decode": 0.0}, t0)

    def _single(self, rgb: npt.NDArray[np.uint8], ms: dict[str, float], t_start: float,
                still: bool = False) -> PipelineResult:
        frame = FrameImage(rgb)  # one Pillow copy of the frame shared by every warp
        g = self._guarded_guide(frame, ms, t_start, still=still)
        if not g.ok:
            return _fail(g.reason, g.message, g.faces, ms, t_start, quality=g.quality, box=g.box,
                         landmarks=g.landmarks)
        try:
            t = time.perf_counter()
            cand = self._candidate(frame, g, None)
            ms["refine"] = _ms(t)
            t = time.perf_counter()
            template = self.template([cand])
            ms["embed"] = _ms(t)
        except (ValueError, ArithmeticError, ModelError) as e:
            return _fail("pipeline-error", f"frame could not be processed: {e}", g.faces, ms, t_start,
                         quality=g.quality, box=g.box, landmarks=g.landmarks)
        ms["total"] = _ms(t_start)
        return PipelineResult(ok=True, reason="ok", message=MESSAGES["ok"], faces=g.faces,
                              quality=g.quality, ms=MappingProxyType(ms), template=template,
                              box=g.box, landmarks=cand.landmarks)

    # ---- the session's steps: guide every frame, candidates of the best, one template -------
    def guide(self, rgb: npt.NDArray[np.uint8]) -> Guide:
        """Detect + quality gates on one frame (no embedding): what the customer is told now."""
        t0 = time.perf_counter()
        ms: dict[str, float] = {}
        bad = self._bad_frame(rgb)
        if bad is not None:
            ms["total"] = 0.0
            return Guide(False, "bad-frame", bad, 0, MappingProxyType({}), MappingProxyType(ms))
        g = self._guarded_guide(FrameImage(np.ascontiguousarray(rgb)), ms, t0)
        ms["total"] = _ms(t0)
        return g

    def candidate(self, rgb: npt.NDArray[np.uint8], guide: Guide,
                  mesh: MeshResult | None = None) -> Candidate | None:
        """The template crop of a frame that passed :meth:`guide` (FaceMesh-refined when enabled).

        ``mesh`` may pass FaceMesh points already computed for this frame (liveness) so that
        FaceMesh does not run twice. None when the landmarks cannot be aligned (the frame is
        then simply not a candidate); ValueError for a guide that did not pass (misuse).
        """
        try:
            return self._candidate(np.ascontiguousarray(rgb), guide, mesh)
        except ArithmeticError:
            return None

    def template(self, candidates: Sequence[Candidate]) -> npt.NDArray[np.float32]:
        """The fused, L2-normalised template of one or more candidates (the decision's step)."""
        embeddings = self.embedder.embed_many([c.crop for c in candidates])  # batched invokes
        return fuse(embeddings, fusion_weights([c.score for c in candidates], weighted=self.fusion_weighted))

    def mesh_points(self, rgb: npt.NDArray[np.uint8], guide: Guide) -> MeshResult | None:
        """FaceMesh's 468 points for the guided face (None without FaceMesh or when it sees none)."""
        if self.mesh is None or guide.face is None:
            return None
        face = guide.face
        try:
            return self.mesh.landmarks(rgb, face.box, face.keypoints[0], face.keypoints[1])
        except ValueError:
            return None

    # ---- internals ----------------------------------------------------------------------
    def _bad_frame(self, rgb: object) -> str | None:
        if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 \
                or rgb.dtype != np.uint8 or min(rgb.shape[:2]) < self.config.decode.min_side_px:
            shape = getattr(rgb, "shape", None)
            dtype = getattr(rgb, "dtype", type(rgb).__name__)
            return (f"expected an HxWx3 uint8 RGB frame with sides >= {self.config.decode.min_side_px}, "
                    f"got shape {shape} dtype {dtype}")
        return None

    def _guarded_guide(self, frame: FrameImage, ms: dict[str, float], t_start: float,
                       still: bool = False) -> Guide:
        # numeric corner cases (degenerate geometry, a non-finite model output) become a
        # result with a reason, never an exception out of the pipeline
        try:
            return self._guide(frame, ms, still)
        except (ValueError, ArithmeticError, ModelError) as e:
            return Guide(False, "pipeline-error", f"frame could not be processed: {e}", 0,
                         MappingProxyType({}), MappingProxyType(ms))

    def _guide(self, frame: FrameImage, ms: dict[str, float], still: bool = False) -> Guide:
        h, w = frame.shape[:2]
        t = time.perf_counter()
        faces = self.detector.detect(frame)
        ms["detect"] = _ms(t)
        if not faces and still and self.fallback is not None:
            # a still image (ID photo, embed, evaluation) has no next frame: look once more
            # with the second detector; a session frame without a face just waits for the next
            t = time.perf_counter()
            faces = self.fallback.detect(frame)
            ms["fallback"] = _ms(t)
        if not faces:
            return Guide(False, "no-face", MESSAGES["no-face"], 0, MappingProxyType({}), MappingProxyType(ms))
        idx = choose_subject(faces, w, h)
        face = faces[idx]
        # a box overlapping the subject's is the subject's own face seen twice, not a second
        # face (detect.distinct_faces: one rule for the quality gate and the liveness count)
        others = [faces[i] for i in faces_apart([f.box for f in faces], face.box)]
        n_faces = 1 + len(others)
        t = time.perf_counter()
        try:
            crop = self._gate_crop(frame, face.landmarks)
        except ValueError as e:
            ms["align"] = _ms(t)
            return Guide(False, "no-face", f"face landmarks unusable: {e}", n_faces, MappingProxyType({}),
                         MappingProxyType(ms), box=face.box, landmarks=face.landmarks)
        verdict = assess(face.landmarks, crop, dominance([face.width] + [f.width for f in others], 0),
                         self.config.quality)
        ms["align"] = _ms(t)
        quality = MappingProxyType(verdict.measures)
        return Guide(verdict.ok, verdict.reason, verdict.message, n_faces, quality, MappingProxyType(ms),
                     score=capture_score(verdict.measures), box=face.box, landmarks=face.landmarks,
                     face=face if verdict.ok else None)

    @staticmethod
    def _gate_crop(frame: FrameImage, landmarks: npt.NDArray[np.float64]) -> npt.NDArray[np.uint8]:
        """The coarse aligned crop the gates measure: only its measured region is warped.

        The rest stays black (:func:`~kycedge.vision.quality.assess` reads only
        :func:`~kycedge.vision.quality.measured_region`); warping 67x81 instead of 112x112
        pixels saves about 0.2 ms per frame (ADR 0012, "Speed").
        """
        y0, y1, x0, x1 = measured_region(SFACE_SIZE, SFACE_SIZE)
        crop = np.zeros((SFACE_SIZE, SFACE_SIZE, 3), dtype=np.uint8)
        crop[y0:y1, x0:x1] = warp_affine(frame, alignment_matrix(landmarks), SFACE_SIZE, SFACE_SIZE,
                                         part=(x0, y0, x1, y1))
        return crop

    def _candidate(self, frame: npt.NDArray[np.uint8] | FrameImage, guide: Guide,
                   mesh: MeshResult | None) -> Candidate:
        face = guide.face
        if not guide.ok or face is None:
            raise ValueError(f"expected a frame that passed the guide, got {guide.reason!r}")
        landmarks = face.landmarks
        if self.mesh is not None:
            if mesh is None:
                try:
                    mesh = self.mesh.landmarks(frame, face.box, face.keypoints[0], face.keypoints[1])
                except ValueError:  # degenerate box or eye points: keep the detector's landmarks
                    mesh = None
            for _ in range(self.mesh_passes - 1):
                if mesh is None:
                    break
                try:
                    mesh = self.mesh.rerun(frame, mesh) or mesh
                except ValueError:
                    break
            if mesh is not None:
                landmarks = conventional_points(mesh.five) if self.mesh_convention else mesh.five
        try:
            crop = warp_affine(frame, alignment_matrix(landmarks), SFACE_SIZE, SFACE_SIZE)
        except ValueError as e:  # degenerate landmarks: not a candidate
            raise ArithmeticError(f"face landmarks unusable: {e}") from e
        return Candidate(crop=crop, score=guide.score, quality=guide.quality, landmarks=landmarks)
