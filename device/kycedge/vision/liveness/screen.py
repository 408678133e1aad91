"""Passive screen cues on a face crop (pure numpy, no model, no I/O).

A phone or monitor replaying a face re-images it: the screen's pixel grid beats with the
camera's (moire: narrow peaks in the high-frequency spectrum), the backlight adds glare and
shifts colour, and the double imaging blurs and flattens the face. Each function here
takes one RGB crop (H x W x 3, uint8) and returns one number; :func:`screen_cues` computes
them all. Which of them may refuse a clip, and at which threshold, is :data:`RULES`; how the
thresholds were set (on pad-stills-dev or LFW, never on pad-video-dev) and what every cue
measured, including those that did not work, is in docs/decisions/0016-passive-screen-cues.md.

The crop is a face region (a tight crop is what the cues were measured on): callers cut
it from the detector's box with :func:`face_crop`. Crops stay in RAM; nothing here keeps
or returns pixels.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kycedge.vision.liveness.edges import above_local, line_coverage, luma
from kycedge.vision.liveness.window import window_score

__all__ = [
    "COLOUR_CUES",
    "CUE_NAMES",
    "DEFAULT_RULES",
    "FRAME_CUE_NAMES",
    "RULES",
    "CueRule",
    "ScreenConfig",
    "ScreenEvidence",
    "ScreenSampler",
    "area_resize",
    "bezel_score",
    "blue_shift",
    "contrast",
    "face_crop",
    "frame_cues",
    "glare_fraction",
    "judge_screen",
    "luma",
    "moire_peak",
    "saturation_mean",
    "scaled_sharpness",
    "screen_cues",
    "sharpness",
]

Box = tuple[float, float, float, float]
RGB = npt.NDArray[np.uint8]
F64 = npt.NDArray[np.float64]

MIN_SIDE_PX = 32       # a crop smaller than this says nothing about texture
MAX_SIDE_PX = 256      # larger crops are block-averaged down to bound the cost


def _check(rgb: RGB) -> None:
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 RGB crop, got shape {rgb.shape}")
    if min(rgb.shape[0], rgb.shape[1]) < MIN_SIDE_PX:
        raise ValueError(f"crop {rgb.shape[1]}x{rgb.shape[0]} px is below {MIN_SIDE_PX} px a side")


def _scaled_box(rgb: RGB, box: Box, inner: float) -> tuple[int, int, int, int]:
    """The detector's box (x0, y0, x1, y1) scaled about its centre by ``inner`` and clipped
    to the frame, as whole pixels."""
    bx0, by0, bx1, by1 = box
    cx, cy = (bx0 + bx1) / 2, (by0 + by1) / 2
    w, h = (bx1 - bx0) * inner, (by1 - by0) * inner
    H, W = rgb.shape[:2]
    return (max(0, round(cx - w / 2)), max(0, round(cy - h / 2)),
            min(W, round(cx + w / 2)), min(H, round(cy + h / 2)))


def face_crop(rgb: RGB, box: Box, inner: float = 1.0) -> RGB:
    """The box (x0, y0, x1, y1, the detector's) cut from the frame, scaled about its centre by
    ``inner``, clipped to the frame, and block-averaged so that its longer side is at most
    ``MAX_SIDE_PX``."""
    x0, y0, x1, y1 = _scaled_box(rgb, box, inner)
    if x1 - x0 < MIN_SIDE_PX or y1 - y0 < MIN_SIDE_PX:
        w, h = (box[2] - box[0]) * inner, (box[3] - box[1]) * inner
        raise ValueError(f"face box {w:.0f}x{h:.0f} px is below {MIN_SIDE_PX} px a side in the frame")
    crop = rgb[y0:y1, x0:x1]
    k = int(np.ceil(max(crop.shape[:2]) / MAX_SIDE_PX))
    if k > 1:
        hh, ww = (crop.shape[0] // k) * k, (crop.shape[1] // k) * k
        crop = crop[:hh, :ww].reshape(hh // k, k, ww // k, k, 3).mean(axis=(1, 3)).round().astype(np.uint8)
    return np.ascontiguousarray(crop)


def moire_peak(rgb: RGB) -> float:
    """How much the strongest high-frequency component stands above its neighbourhood:
    log10 of the spectrum's peak over the band's median, radial frequency 0.12-0.5
    cycles/px of the Hann-windowed, mean-removed luma. A camera's own noise and skin texture
    give a smooth spectrum; a screen's grid beating with the sensor gives narrow peaks."""
    _check(rgb)
    y = luma(rgb)
    y = y - y.mean()
    h, w = y.shape
    win = np.outer(np.hanning(h), np.hanning(w))
    spec = np.abs(np.fft.rfft2(y * win))
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    r = np.sqrt(fx * fx + fy * fy)
    band = spec[(r >= 0.12) & (r <= 0.5)]
    med = float(np.median(band))
    if med <= 0 or band.size == 0:
        return 0.0
    return float(np.log10(float(band.max()) / med))


def _max_min(rgb: RGB) -> tuple[F64, F64]:
    """Per-pixel max and min over the channels (element-wise: faster than an axis-2 reduction)."""
    r, g, b = (rgb[..., i] for i in range(3))
    mx = np.maximum(np.maximum(r, g), b).astype(np.float64)
    mn = np.minimum(np.minimum(r, g), b).astype(np.float64)
    return mx, mn


def glare_fraction(rgb: RGB) -> float:
    """Fraction of pixels that are near-white and unsaturated (specular glare of glass)."""
    _check(rgb)
    mx, mn = _max_min(rgb)
    return float(np.mean((mx >= 245.0) & (mx - mn <= 0.12 * 255.0)))


def saturation_mean(rgb: RGB) -> float:
    """Mean HSV saturation (max - min) / max over pixels that are not near black."""
    _check(rgb)
    mx, mn = _max_min(rgb)
    ok = mx > 20.0
    if not ok.any():
        return 0.0
    return float(np.mean((mx[ok] - mn[ok]) / mx[ok]))


def blue_shift(rgb: RGB) -> float:
    """(mean blue - mean red) / mean luma x 255: a screen's cool white point shows on skin."""
    _check(rgb)
    f = rgb.astype(np.float64)
    yl = float(luma(rgb).mean()) * 255.0
    return float((f[..., 2].mean() - f[..., 0].mean()) / max(yl, 1.0))


def sharpness(rgb: RGB) -> float:
    """High-frequency energy over total AC energy of the luma (a Laplacian's variance over
    the luma's variance): re-imaging a screen blurs a face."""
    _check(rgb)
    y = luma(rgb)
    lap = (-4.0 * y[1:-1, 1:-1] + y[:-2, 1:-1] + y[2:, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:])
    var = float(y.var())
    if var <= 0:
        return 0.0
    return float(lap.var() / var)


def _area_weights(n_in: int, n_out: int) -> F64:
    """(n_out x n_in) area-averaging weights: output cell k is the mean of the input span
    [k, k + 1) x n_in / n_out (fractional pixels at the ends weighted by their overlap)."""
    edges = np.linspace(0.0, float(n_in), n_out + 1)
    lo, hi = edges[:-1, None], edges[1:, None]
    px = np.arange(n_in, dtype=np.float64)[None, :]
    w = np.clip(np.minimum(hi, px + 1.0) - np.maximum(lo, px), 0.0, None)
    return np.asarray(w / w.sum(axis=1, keepdims=True))


def area_resize(y: F64, side_px: int) -> F64:
    """A 2-D array area-averaged to ``side_px`` x ``side_px`` (downsampling only)."""
    h, w = y.shape
    if min(h, w) < side_px:
        raise ValueError(f"{w}x{h} px is below the {side_px} px a side it would be resampled to")
    return np.asarray(_area_weights(h, side_px) @ y @ _area_weights(w, side_px).T)


SCALED_SIDE_PX = 64    # the face's inner region is compared at this one scale
SCALED_INNER = 0.7     # the inner part of the detector's box: skin and features, no background


def scaled_sharpness(rgb: RGB, box: Box, side_px: int = SCALED_SIDE_PX, inner: float = SCALED_INNER) -> float:
    """:func:`sharpness` of the face at one scale: the central ``inner`` part of the detector's
    box, as luma, area-averaged to ``side_px`` x ``side_px``; a Laplacian's variance over the
    luma's variance there.

    :func:`sharpness` on a crop depends on how many pixels the face spans (a large face is
    smooth per pixel) and on the JPEG quality (fine detail is what compression drops first);
    at one face-relative scale, well below the pixel size of every face large enough to judge,
    both matter much less, and what remains is the detail the optics delivered: a screen
    re-imaged by a second camera loses it (two lenses, the screen's own resampling). A face
    whose inner part is smaller than ``side_px`` raises ValueError (it abstains)."""
    x0, y0, x1, y1 = _scaled_box(rgb, box, inner)
    if min(x1 - x0, y1 - y0) < side_px:
        raise ValueError(f"face inner region {x1 - x0}x{y1 - y0} px is below {side_px} px a side")
    y = area_resize(luma(np.ascontiguousarray(rgb[y0:y1, x0:x1])), side_px)
    lap = (-4.0 * y[1:-1, 1:-1] + y[:-2, 1:-1] + y[2:, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:])
    var = float(y.var())
    if var <= 1e-12:                       # flat (the resampling's rounding is not detail)
        return 0.0
    return float(lap.var() / var)


def contrast(rgb: RGB) -> float:
    """The luma's 2nd to 98th percentile range (a backlit screen re-imaged is washed out)."""
    _check(rgb)
    lo, hi = np.percentile(luma(rgb), [2.0, 98.0])
    return float(hi - lo)


def bezel_score(rgb: RGB, box: Box, reach: float = 1.2, edge: float = 0.06) -> float:
    """A screen's two side edges framing the face, in [0, 1].

    For the columns left of the face box and those right of it (up to ``reach`` box widths
    away), the fraction of the rows spanned by the box (extended by half its height each
    way) where the luma steps by more than ``edge`` across the column, always the same way,
    less the median of that fraction over the 17 neighbouring columns (texture steps
    everywhere, an edge in one column); the best column on each side, and the smaller of
    the two sides. A phone or a letterboxed monitor held up has two near-vertical straight
    edges framing the face (score near 1); a room rarely has both (a door frame does).
    Tilted edges (more than about 3 degrees) are not seen, nor edges within 3 % of the width
    (at least 12 px) of the frame's own border (an image's padding is not a screen). 0 when
    a side lies outside the frame.
    """
    y = luma(rgb)
    H, W = y.shape
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    if bw < MIN_SIDE_PX or bh < MIN_SIDE_PX:
        raise ValueError(f"face box {bw:.0f}x{bh:.0f} px is below {MIN_SIDE_PX} px a side")
    r0, r1 = max(0, int(y0 - 0.5 * bh)), min(H, int(y1 + 0.5 * bh))
    if r1 - r0 < MIN_SIDE_PX:
        return 0.0
    d = np.diff(y[r0:r1], axis=1)                          # step between column c and c + 1
    cover = above_local(line_coverage(d, edge))            # each column boundary, less texture
    m = max(12, int(0.03 * W))                             # not the frame's own border (or padding)
    left = cover[max(m, int(x0 - reach * bw)):max(m, int(x0 - 0.05 * bw))]
    right = cover[min(cover.size - m, int(x1 + 0.05 * bw)):min(cover.size - m, int(x1 + reach * bw))]
    if left.size == 0 or right.size == 0:
        return 0.0
    return float(max(0.0, min(left.max(), right.max())))


CUE_NAMES = ("moire_peak", "glare_fraction", "saturation_mean", "blue_shift", "sharpness", "contrast")
_CUES = {"moire_peak": moire_peak, "glare_fraction": glare_fraction, "saturation_mean": saturation_mean,
         "blue_shift": blue_shift, "sharpness": sharpness, "contrast": contrast}


def screen_cues(rgb: RGB) -> dict[str, float]:
    """Every cue of :data:`CUE_NAMES` for one crop (ValueError for a crop that is too small)."""
    _check(rgb)
    return {name: fn(rgb) for name, fn in _CUES.items()}


FRAME_CUE_NAMES = (*CUE_NAMES, "bezel", "window", "scaled_sharpness")
COLOUR_CUES = ("saturation_mean", "blue_shift")
GREY_SATURATION = 0.03   # below this mean saturation a crop has no colour to judge


def frame_cues(rgb: RGB, box: Box) -> dict[str, float]:
    """Every cue for one frame: the crop cues on the face box, :func:`bezel_score` and
    :func:`~kycedge.vision.liveness.window.window_score` around it, and
    :func:`scaled_sharpness` (left out when the face is too small for it; ValueError when
    it is too small for the crop cues). A grey crop (a monochrome camera or image) has no
    colour cues: they are left out rather than read as "no skin colour"."""
    cues = {**screen_cues(face_crop(rgb, box)), "bezel": bezel_score(rgb, box),
            "window": window_score(rgb, box)}
    with contextlib.suppress(ValueError):
        cues["scaled_sharpness"] = scaled_sharpness(rgb, box)
    if cues["saturation_mean"] < GREY_SATURATION:
        for c in COLOUR_CUES:
            del cues[c]
    return cues


@dataclass(frozen=True)
class CueRule:
    """One refusing cue: ``attack`` when its median over the frames is past ``threshold``
    (above it when ``above``, else below); with ``per_frame``, when at least the config's
    ``min_frames`` sampled frames are past it (an event, not a typical value). ``reason``:
    the refusal's reason code (default ``screen-<rule name>``)."""

    cue: str
    threshold: float
    above: bool = True
    per_frame: bool = False
    reason: str | None = None

    def hit(self, value: float) -> bool:
        return value >= self.threshold if self.above else value <= self.threshold


# The rules the clip judge may use, with thresholds set on pad-stills-dev or LFW only
# (docs/decisions/0016-passive-screen-cues.md has every cue's figures):
RULES = {
    # skin rendered by a screen's cool white point: blue about as strong as red. Threshold:
    # the live stills' 98th percentile on pad-stills-dev (BPCER 1.7 %, APCER 43 % there)
    "blue_shift": CueRule("blue_shift", -0.131),
    # a screen's washed-out colour (opt-in: the live stills' 98th percentile, BPCER 1.7 %,
    # APCER 57 % there; chosen as a rule only after pad-video-dev was measured, see ADR 0016)
    "saturation_mean": CueRule("saturation_mean", 0.2105, above=False),
    # two straight side edges framing the face; threshold above LFW's 99th percentile (0.31)
    # but a door frame behind a live person scores as high: measured, not deciding by default
    "bezel": CueRule("bezel", 0.5),
    # a screen's window: two parallel side edges (tilt up to 15 deg) and one closing below the
    # face, across the body. Threshold: the 99.5th percentile of bona fide photos with real
    # surroundings, faces-small and the lfw-dev images without black padding (a padded LFW
    # image is a photo inside a rectangle, what the cue looks for); ADR 0017
    "window": CueRule("window", 0.2225),
    # the face at one scale lost the detail a second camera loses (opt-in): below the 1st
    # percentile of live faces, the lowest of lfw-dev (0.0339), faces-small and the live
    # pad-stills; it refuses no pad-video-dev clip (ADR 0017)
    "scaled_sharpness": CueRule("scaled_sharpness", 0.0339, above=False),
    # a second face in the frame (a phone held up beside its holder): the clip judge's form of
    # the session's one-face rule, counted by a second detector (``faces``: the faces it found
    # in a sampled frame) in at least ``min_frames`` sampled frames (ADR 0017)
    "multiple_faces": CueRule("faces", 2.0, per_frame=True, reason="multiple-faces"),
}
DEFAULT_RULES = ("blue_shift", "multiple_faces", "window")


@dataclass(frozen=True)
class ScreenConfig:
    """The refusing cues (names of :data:`RULES`) and how many frames they need."""

    rules: tuple[str, ...] = DEFAULT_RULES
    min_frames: int = 3               # fewer frames with the cue: it does not decide
    every: int = 5                    # the cues run on every n-th frame with a face (cost)
    max_frames: int = 12

    def __post_init__(self) -> None:
        unknown = [r for r in self.rules if r not in RULES]
        if unknown:
            raise ValueError(f"screen cues: expected names from {sorted(RULES)}, got {unknown}")


@dataclass(frozen=True)
class ScreenEvidence:
    decision: str                    # "attack" | "none" (a screen cue never says bona fide)
    reason: str
    score: float                     # how far the deciding cue's median is past its threshold
    measures: dict[str, float]


class ScreenSampler:
    """Collects the cues of every ``cfg.every``-th frame with a face, up to ``cfg.max_frames``
    (numbers only: no pixel is kept). Faces too small for the cues are skipped."""

    def __init__(self, cfg: ScreenConfig | None = None) -> None:
        self.cfg = cfg or ScreenConfig()
        self.cues: list[dict[str, float]] = []
        self._faced = 0

    @property
    def due(self) -> bool:
        """Whether the next frame offered will be sampled (a caller may then count its faces)."""
        return self._faced % self.cfg.every == 0 and len(self.cues) < self.cfg.max_frames

    def offer(self, rgb: RGB, box: Box, faces: int | None = None) -> None:
        """One frame in which the detector found the face at ``box``; ``faces``: how many faces
        a second detector found in it (a sampled frame only), kept as the ``faces`` cue."""
        take = self.due
        self._faced += 1
        if take:
            with contextlib.suppress(ValueError):
                cues = frame_cues(rgb, box)
                if faces is not None:
                    cues["faces"] = float(faces)
                self.cues.append(cues)

    def judge(self) -> ScreenEvidence:
        return judge_screen(self.cues, self.cfg)


def judge_screen(cues: Sequence[dict[str, float]], cfg: ScreenConfig | None = None) -> ScreenEvidence:
    """The median of each cue over the frames that have it; ``attack`` when a rule's cue is
    past its threshold (a ``per_frame`` rule: in at least ``min_frames`` frames; the first such
    rule names the reason). A screen cue can only refuse, never make a clip bona fide."""
    cfg = cfg or ScreenConfig()
    names = sorted(set().union(*cues)) if cues else []
    measures = {n: round(float(np.median([c[n] for c in cues if n in c])), 4) for n in names}
    measures["screen_frames"] = float(len(cues))
    decided = False
    for name in cfg.rules:
        rule = RULES[name]
        vals = [c[rule.cue] for c in cues if rule.cue in c]
        if len(vals) < cfg.min_frames:
            continue
        decided = True
        if rule.per_frame:
            past = sum(rule.hit(x) for x in vals)
            measures[f"{rule.cue}_past_frames"] = float(past)
            if past >= cfg.min_frames:
                return ScreenEvidence("attack", rule.reason or f"screen-{name}", float(past), measures)
            continue
        v = float(np.median(vals))
        if rule.hit(v):
            margin = v - rule.threshold if rule.above else rule.threshold - v
            return ScreenEvidence("attack", rule.reason or f"screen-{name}", round(margin, 4), measures)
    return ScreenEvidence("none", "no-screen-cue" if decided or not cfg.rules else "too-few-frames", 0.0,
                          measures)
