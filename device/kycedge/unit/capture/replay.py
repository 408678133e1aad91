"""Replay source: a directory of still images (and short ``.y4m`` clips) or a ``.y4m`` video, looped.

Used by the demo, the tests and bench set-ups with no camera. Images are decoded through
``kycedge.vision.decode`` (the only Pillow importer), so replayed bytes are treated
exactly like any other untrusted image: a file that does not decode is skipped with a
logged reason code and, if *no* file decodes, ``open()`` fails naming the directory.

In a directory, a ``.y4m`` file contributes all its frames at its place in the name
order (it must fit the frame cache; point ``replay_path`` at a long video instead).
The directory is re-scanned on every ``open()``: a demo or a bench can point the
"camera" at a different scene between sessions by changing the directory's contents
(symlinks to fixture files are fine). Decoded frames are cached up to
``cache_max_bytes`` (and kept across ``open()`` for files that did not change), so a
long soak does not re-decode JPEGs; each ``read()`` returns a fresh copy the caller
owns. With ``max_size`` (the configured camera resolution) a larger image is scaled
down to fit, as a camera would deliver it.

``.y4m`` (YUV4MPEG2) is the uncompressed video container every encoder can write
(``ffmpeg -i in.mp4 -pix_fmt yuv420p out.y4m``); it is parsed here with numpy alone
(4:2:0, 4:2:2, 4:4:4 and mono, BT.601 limited range), so no video library is needed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from kycedge.core.errors import CaptureError, KycEdgeError
from kycedge.unit.capture.base import CaptureTimeoutError, Frame, SourceClosedError, check_rgb

__all__ = ["IMAGE_SUFFIXES", "ReplaySource", "Y4MReader", "fit_within", "y4m_fps", "yuv_to_rgb"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
Decoder = Callable[[bytes], np.ndarray]


def _default_decoder() -> Decoder:
    from kycedge.vision import decode

    fn: Decoder = decode.decode_image
    return fn


class ReplaySource:
    """Loops over the images of a directory (sorted by name) or the frames of a .y4m file."""

    def __init__(
        self,
        path: Path,
        *,
        fps: float = 0.0,
        decoder: Decoder | None = None,
        max_file_bytes: int = 20 * 2**20,
        cache_max_bytes: int = 64 * 2**20,
        max_size: tuple[int, int] | None = None,
    ) -> None:
        self._path = Path(path)
        self._fps = fps
        self._max_size = max_size
        self._decoded: dict[tuple[str, int, int, int], np.ndarray] = {}
        self._clips: dict[tuple[str, int, int, int], list[np.ndarray]] = {}
        self._decoder = decoder
        self._max_file_bytes = max_file_bytes
        self._cache_max_bytes = cache_max_bytes
        self._frames: list[np.ndarray] = []
        self._files: list[Path] = []
        self._y4m: Y4MReader | None = None
        self._index = 0
        self._seq = 0
        self._open = False
        self._next_t = 0.0

    @property
    def name(self) -> str:
        return f"replay:{self._path}"

    def open(self) -> None:
        self.close()
        if self._path.is_file() and self._path.suffix.lower() == ".y4m":
            self._y4m = Y4MReader(self._path)
        elif self._path.is_dir():
            self._load_images()
        else:
            raise CaptureError(
                f"replay source {self._path}: expected a directory of images or a .y4m file, "
                f"got {'a missing path' if not self._path.exists() else 'an unsupported file'}",
                reason="capture-unavailable",
            )
        self._index = 0
        self._seq = 0
        self._open = True
        self._next_t = time.monotonic()

    def _load_images(self) -> None:
        files = sorted(
            p for p in self._path.iterdir()
            if p.suffix.lower() in IMAGE_SUFFIXES | {".y4m"} and p.is_file()
        )
        if not files:
            raise CaptureError(
                f"replay source {self._path}: expected .jpg/.jpeg/.png files, found none",
                reason="capture-unavailable",
            )
        decoder = self._decoder or _default_decoder()
        decoded: dict[tuple[str, int, int, int], np.ndarray] = {}  # what this scan keeps
        clips: dict[tuple[str, int, int, int], list[np.ndarray]] = {}
        cached = 0
        frames: list[np.ndarray] = []
        kept: list[Path] = []
        for p in files:
            if p.suffix.lower() == ".y4m":
                key = _file_key(p)
                known = self._clips.get(key) if key is not None else None
                clip = known if known is not None else self._clip_frames(p, self._cache_max_bytes - cached)
                if key is not None:
                    clips[key] = clip
                frames += clip
                cached += sum(f.nbytes for f in clip)
                kept += [p] * len(clip)
                continue
            key = _file_key(p)
            rgb = self._decoded.get(key) if key is not None else None
            if rgb is None:
                rgb = self._decode_file(p, decoder)
            if rgb is None:
                continue
            kept.append(p)
            if cached + rgb.nbytes <= self._cache_max_bytes:
                frames.append(rgb)
                cached += rgb.nbytes
                if key is not None:
                    decoded[key] = rgb
        if not kept:
            raise CaptureError(
                f"replay source {self._path}: none of {len(files)} image files decoded",
                reason="capture-unavailable",
            )
        self._files = kept
        # Cache only when every frame fits; otherwise decode on each read (bounded RAM).
        if len(frames) != len(kept) and any(p.suffix.lower() == ".y4m" for p in kept):
            raise CaptureError(
                f"replay source {self._path}: expected clips and images to fit "
                f"{self._cache_max_bytes} bytes of frames, got more; point replay_path at the .y4m file",
                reason="capture-unavailable",
            )
        self._frames = frames if len(frames) == len(kept) else []
        self._decoder = decoder
        self._decoded = decoded  # unchanged files are not decoded again on the next open()
        self._clips = clips

    def _clip_frames(self, p: Path, budget: int) -> list[np.ndarray]:
        try:
            reader = Y4MReader(p)
        except CaptureError as e:
            log.warning("replay file skipped", extra={"file": p.name, "reason": e.reason})
            return []
        out: list[np.ndarray] = []
        try:
            while True:
                try:
                    frame = reader.next_frame(loop=False)
                except CaptureError:
                    break  # end of the clip (or a truncated last frame)
                budget -= frame.nbytes
                if budget < 0:
                    raise CaptureError(
                        f"replay source {self._path}: expected clips and images to fit "
                        f"{self._cache_max_bytes} bytes of frames, got more at {p.name}; "
                        "point replay_path at the .y4m file", reason="capture-unavailable")
                out.append(self._fit(frame))
        finally:
            reader.close()
        return out

    def _decode_file(self, p: Path, decoder: Decoder) -> np.ndarray | None:
        try:
            size = p.stat().st_size
            if size > self._max_file_bytes:
                log.warning(
                    "replay file skipped",
                    extra={"file": p.name, "reason": "too-large", "bytes": size},
                )
                return None
            return self._fit(check_rgb(decoder(p.read_bytes()), f"replay {p.name}"))
        except KycEdgeError as e:
            log.warning("replay file skipped", extra={"file": p.name, "reason": e.reason})
        except OSError as e:
            log.warning("replay file skipped", extra={"file": p.name, "reason": "unreadable",
                                                      "detail": e.strerror or str(e)})
        return None

    def read(self, timeout_s: float = 2.0) -> Frame:
        if not self._open:
            raise SourceClosedError(f"{self.name}: read() before open()")
        if self._fps > 0:
            delay = self._next_t - time.monotonic()
            if delay > timeout_s:
                raise CaptureTimeoutError(f"{self.name}: next frame due in {delay:.2f} s")
            if delay > 0:
                time.sleep(delay)
            self._next_t = max(self._next_t + 1.0 / self._fps, time.monotonic())
        rgb = self._next_rgb()
        self._seq += 1
        return Frame(rgb=rgb, seq=self._seq)

    def _next_rgb(self) -> np.ndarray:
        if self._y4m is not None:
            return self._fit(self._y4m.next_frame(loop=True))
        if self._frames:
            rgb: np.ndarray = self._frames[self._index % len(self._frames)].copy()
            self._index += 1
            return rgb
        assert self._decoder is not None
        for _ in range(len(self._files)):
            p = self._files[self._index % len(self._files)]
            self._index += 1
            decoded = self._decode_file(p, self._decoder)
            if decoded is not None:
                return decoded
        raise CaptureError(f"{self.name}: no file decodes any more", reason="capture-failed")

    def _fit(self, rgb: np.ndarray) -> np.ndarray:
        """Like a camera configured for ``max_size``: never deliver a larger frame."""
        if self._max_size is None:
            return rgb
        return fit_within(rgb, *self._max_size)

    def close(self) -> None:
        self._open = False
        self._frames = []
        self._files = []
        if self._y4m is not None:
            self._y4m.close()
            self._y4m = None


_Y4M_MAGIC = b"YUV4MPEG2"
_MAX_Y4M_HEADER = 1024


class Y4MReader:
    """Frames of a YUV4MPEG2 file as RGB arrays; loops on request."""

    def __init__(self, path: Path) -> None:
        self._path = path
        try:
            self._fh: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed in close()
        except OSError as e:
            raise CaptureError(f"{path}: cannot open video: {e.strerror or e}",
                               reason="capture-unavailable") from e
        header = self._fh.readline(_MAX_Y4M_HEADER)
        try:
            self.width, self.height, self.chroma = parse_y4m_header(header)
        except CaptureError:
            self._fh.close()
            raise
        self._data_start = self._fh.tell()
        self.fps = y4m_fps(header)
        cw, ch = _chroma_size(self.width, self.height, self.chroma)
        self._plane_bytes = (self.width * self.height, cw * ch, cw, ch)

    def next_frame(self, *, loop: bool = False) -> np.ndarray:
        line = self._fh.readline(_MAX_Y4M_HEADER)
        if not line and loop:
            self._fh.seek(self._data_start)
            line = self._fh.readline(_MAX_Y4M_HEADER)
            if not line:
                raise CaptureError(f"{self._path}: video has no frames", reason="bad-video")
        if not line.startswith(b"FRAME"):
            raise CaptureError(
                f"{self._path}: expected a FRAME marker, got {line[:16]!r}", reason="bad-video"
            )
        ysize, csize, cw, ch = self._plane_bytes
        need = ysize + (2 * csize if self.chroma != "mono" else 0)
        data = self._fh.read(need)
        if len(data) != need:
            raise CaptureError(
                f"{self._path}: truncated frame: expected {need} bytes, got {len(data)}",
                reason="bad-video",
            )
        buf = np.frombuffer(data, dtype=np.uint8)
        y = buf[:ysize].reshape(self.height, self.width)
        if self.chroma == "mono":
            return yuv_to_rgb(y, None, None)
        u = buf[ysize : ysize + csize].reshape(ch, cw)
        v = buf[ysize + csize :].reshape(ch, cw)
        return yuv_to_rgb(y, u, v)

    def frames(self) -> Iterator[np.ndarray]:
        """Every frame from the current position to the end of the file (no loop)."""
        while True:
            pos = self._fh.tell()
            if not self._fh.read(1):
                return
            self._fh.seek(pos)
            yield self.next_frame()

    def close(self) -> None:
        self._fh.close()


def y4m_fps(header: bytes) -> float | None:
    """The frame rate of a YUV4MPEG2 header (``F30000:1001``), None when absent or unreadable."""
    for tok in header[len(_Y4M_MAGIC):].split():
        if tok[:1] == b"F":
            num, _, den = tok[1:].decode("ascii", "replace").partition(":")
            if num.isdigit() and den.isdigit() and int(den) > 0 and 0 < int(num) / int(den) <= 1000:
                return int(num) / int(den)
    return None


def parse_y4m_header(header: bytes) -> tuple[int, int, str]:
    """(width, height, chroma) from a YUV4MPEG2 stream header line; CaptureError if bad."""
    if not header.startswith(_Y4M_MAGIC) or not header.endswith(b"\n"):
        raise CaptureError(
            f"expected a YUV4MPEG2 header line, got {header[:24]!r}", reason="bad-video"
        )
    width = height = 0
    chroma = "420"
    for tok in header[len(_Y4M_MAGIC):].split():
        key, val = chr(tok[0]), tok[1:].decode("ascii", "replace")
        if key in "WH":
            if not val.isdigit() or not 0 < int(val) <= 8192:
                raise CaptureError(f"y4m {key}: expected 1..8192, got {val!r}", reason="bad-video")
            if key == "W":
                width = int(val)
            else:
                height = int(val)
        elif key == "C":
            chroma = val
    if not width or not height:
        raise CaptureError("y4m header: expected W and H, got neither/one", reason="bad-video")
    if chroma.startswith("420"):
        chroma = "420"
    if chroma not in ("420", "422", "444", "mono"):
        raise CaptureError(
            f"y4m chroma: expected 420*, 422, 444 or mono, got {chroma!r}", reason="bad-video"
        )
    return width, height, chroma


def _chroma_size(w: int, h: int, chroma: str) -> tuple[int, int]:
    if chroma == "420":
        return (w + 1) // 2, (h + 1) // 2
    if chroma == "422":
        return (w + 1) // 2, h
    if chroma == "444":
        return w, h
    return 0, 0


_BAND_ROWS = 32  # rows converted at a time: a few hundred kB of float scratch per band


def yuv_to_rgb(y: np.ndarray, u: np.ndarray | None, v: np.ndarray | None) -> np.ndarray:
    """BT.601 limited-range YCbCr (chroma upsampled by repetition) to HxWx3 uint8 RGB.

    Computed in bands of rows, one channel at a time (float32): the scratch memory is a few
    band-sized planes (under 1 MB at 1280 x 720), never a frame-sized float plane. Converting a
    whole 1280 x 720 frame at once cost about 29 MB of transient RSS per frame, which alone
    took the daemon's peak over its 150 MB floor on a replayed camera-size clip.
    """
    h, w = y.shape
    out: np.ndarray = np.empty((h, w, 3), np.uint8)
    if u is None or v is None:
        for r0 in range(0, h, _BAND_ROWS):
            yf = _luma(y[r0:r0 + _BAND_ROWS])
            np.clip(yf, 0, 255, out=yf)
            out[r0:r0 + _BAND_ROWS] = np.rint(yf)[..., None].astype(np.uint8)
        return out
    ry, rx = -(-h // u.shape[0]), -(-w // u.shape[1])
    band = max(ry, (_BAND_ROWS // ry) * ry)  # whole chroma rows per band
    for r0 in range(0, h, band):
        r1 = min(r0 + band, h)
        c0, c1 = r0 // ry, -(-r1 // ry)
        _band_to_rgb(y[r0:r1], u[c0:c1], v[c0:c1], ry, rx, out[r0:r1])
    return out


def _luma(y: np.ndarray) -> np.ndarray:
    yf: np.ndarray = (y.astype(np.float32) - 16.0) * np.float32(255.0 / 219.0)
    return yf


def _band_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray, ry: int, rx: int, out: np.ndarray) -> None:
    h, w = y.shape
    yf = _luma(y)

    def up(c: np.ndarray) -> np.ndarray:
        full: np.ndarray = np.repeat(np.repeat(c, ry, axis=0), rx, axis=1)[:h, :w].astype(np.float32)
        full -= 128.0
        full *= np.float32(255.0 / 224.0)
        return full

    uf, vf = up(u), up(v)
    for ch in range(3):
        plane: np.ndarray
        if ch == 0:
            plane = yf + np.float32(1.402) * vf
        elif ch == 1:
            plane = yf - np.float32(0.344136) * uf - np.float32(0.714136) * vf
        else:
            plane = yf + np.float32(1.772) * uf
        np.clip(plane, 0, 255, out=plane)
        out[..., ch] = np.rint(plane)


def _file_key(p: Path) -> tuple[str, int, int, int] | None:
    """Identity of a file's content for the decode cache (follows symlinks)."""
    try:
        st = p.stat()
    except OSError:
        return None
    return (p.name, st.st_ino, st.st_size, st.st_mtime_ns)


def fit_within(rgb: np.ndarray, max_w: int, max_h: int) -> np.ndarray:
    """``rgb`` scaled down (aspect kept, area averaging) to fit ``max_w`` x ``max_h``; else as is."""
    h, w = rgb.shape[:2]
    scale = min(max_w / w, max_h / h)
    if scale >= 1.0:
        return rgb
    nw, nh = max(1, int(w * scale)), max(1, int(h * scale))
    # area averaging band by band (one output row at a time), so the extra memory is a
    # few source rows, never a full-size copy of a large frame
    ys = np.linspace(0, h, nh + 1).astype(np.int64)
    xs = np.linspace(0, w, nw + 1).astype(np.int64)
    widths = np.diff(xs)[:, None]
    out: np.ndarray = np.empty((nh, nw, 3), np.uint8)
    for i in range(nh):
        band = rgb[ys[i]:ys[i + 1]].sum(axis=0, dtype=np.uint32)          # (w, 3)
        sums = np.add.reduceat(band, xs[:-1], axis=0)                     # (nw, 3)
        area = widths * (ys[i + 1] - ys[i])
        out[i] = (sums + area // 2) // area
    return out
