"""Untrusted image bytes to an RGB frame, and pixel resampling: the only Pillow importer.

Every failure is an :class:`~kycedge.core.errors.ImageError` with a specific ``reason``:

=====================  ===============================================================
``empty-image``        zero bytes
``file-too-large``     more bytes than ``max_bytes`` (files: from their size, and never
                       more than ``max_bytes + 1`` bytes are read)
``not-a-file``         a path that is not a regular file (``/dev/zero``, a FIFO, a directory)
``unreadable-file``    the file cannot be opened or read
``unknown-format``     not a JPEG or PNG (text, other formats, random bytes)
``image-too-small``    a side shorter than ``min_side_px`` (e.g. 1x1)
``image-too-large``    width x height above ``max_pixels``: refused from the header,
                       before any pixel is decoded (20000x20000 headers, PNG bombs)
``truncated-image``    the data ends before the image does
``corrupt-image``      the decoder rejected the data
=====================  ===============================================================

EXIF orientation is honoured; grayscale, palette, CMYK, alpha (composited on white) and
16-bit images all become ``HxWx3 uint8`` RGB. Memory is bounded by bytes, not pixels:
from the header alone, :func:`kycedge.vision.decode_plan.plan_decode` estimates the peak
(input, raster at the mode's bytes per pixel, output, JPEG coefficient buffer) and picks
a JPEG DCT scale (``draft``) and/or an integer box reduction so that it stays within
``max_decode_bytes``, or refuses the image before decoding it. Large images are reduced
so that the shorter side stays at least ``work_side_px`` (memory follows what the
detector needs, not the sensor size). Conversion to RGB, alpha compositing and the
orientation are done one strip of rows at a time straight into the output array.

:func:`warp_affine` (bilinear, in Pillow's C code) is the pipeline's resampler: about
3x faster than the numpy reference in :mod:`kycedge.vision.align` on a 2-vCPU machine,
within one grey level of it (tests compare the two).
"""

from __future__ import annotations

import io
import os
import stat
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from kycedge.core.config import section
from kycedge.core.errors import ImageError
from kycedge.vision.decode_plan import (
    check_metadata,
    jpeg_coefficient_bytes,
    plan_decode,
    png_metadata_bytes,
    raster_bpp,
    scan_jpeg,
    strip_rows,
)

__all__ = ["DecodeConfig", "FrameImage", "ImageError", "check_byte_count", "decode_image", "read_image_file",
           "sniff_format", "warp_affine"]

# PNG text chunks (tEXt/zTXt/iTXt) are decompressed into img.info: Pillow allows 64 MB
# of them per image by default; a face photo needs none of it.
PngImagePlugin.MAX_TEXT_CHUNK = 256 * 1024
PngImagePlugin.MAX_TEXT_MEMORY = 1 * 2**20

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class DecodeConfig:
    """Limits for untrusted image bytes."""

    max_bytes: int = section(32 * 2**20, min=1024, max=512 * 2**20, help="largest accepted file")
    max_pixels: int = section(
        40_000_000, min=10_000, max=200_000_000, help="largest width x height accepted from the header"
    )
    min_side_px: int = section(32, min=8, max=4096, help="shortest accepted image side")
    work_side_px: int = section(
        2048, min=256, max=16384,
        help="images larger than this on both sides are decoded reduced (the shorter side stays >= this)",
    )
    max_decode_bytes: int = section(
        96 * 2**20, min=16 * 2**20, max=2**31,
        help="memory one decode may use (input + raster + output + JPEG coefficients): larger "
        "images are decoded at a reduced scale, or refused if even that does not fit",
    )


def check_byte_count(n: int, cfg: DecodeConfig, where: str = "") -> None:
    """The one rule on the size of image bytes: at most ``cfg.max_bytes``."""
    if n > cfg.max_bytes:
        raise ImageError(f"{where}{': ' if where else ''}expected at most {cfg.max_bytes} bytes, "
                         f"got {n}", reason="file-too-large")


def read_image_file(path: Path, config: DecodeConfig | None = None) -> bytes:
    """The bytes of the image file at ``path``, read within the size limit.

    Only a regular file is read (``/dev/zero``, a FIFO, a device or a directory is
    ``not-a-file``; a FIFO is opened non-blocking so that opening it cannot hang), and at
    most ``max_bytes + 1`` bytes are read whatever the file claims, so a file that grows
    while it is read cannot exhaust memory either.
    """
    cfg = config or DecodeConfig()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise ImageError(f"{path}: cannot open: {e.strerror or e}", reason="unreadable-file") from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a device, FIFO or socket"
            raise ImageError(f"{path}: expected a regular image file, got {kind}", reason="not-a-file")
        check_byte_count(st.st_size, cfg, str(path))
        # one read of the announced size (+1 to notice growth): the bytes are held once
        data = os.read(fd, st.st_size + 1)
        while len(data) <= cfg.max_bytes:
            more = os.read(fd, min(cfg.max_bytes + 1 - len(data), 1 << 20))
            if not more:
                break
            data += more  # a file that grows while read (rare): bounded by max_bytes + 1
    except OSError as e:
        raise ImageError(f"{path}: cannot read: {e.strerror or e}", reason="unreadable-file") from e
    finally:
        os.close(fd)
    check_byte_count(len(data), cfg, f"{path} (read)")
    return data


def sniff_format(data: bytes) -> str | None:
    """``"JPEG"``, ``"PNG"`` or None, from the magic bytes only."""
    if data.startswith(_JPEG_MAGIC):
        return "JPEG"
    if data.startswith(_PNG_MAGIC):
        return "PNG"
    return None


def _describe_unknown(data: bytes) -> str:
    head = data[:512]
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return f"expected a JPEG or PNG image, got {len(data)} bytes of unknown binary data " \
            f"(starting {data[:8].hex()})"
    return f"expected a JPEG or PNG image, got {len(data)} bytes of text"


def decode_image(data: bytes, config: DecodeConfig | None = None) -> npt.NDArray[np.uint8]:
    """Decode JPEG/PNG ``data`` into an ``HxWx3 uint8`` RGB array, orientation applied."""
    cfg = config or DecodeConfig()
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ImageError(f"expected image bytes, got {type(data).__name__}", reason="bad-image")
    data = bytes(data)
    if not data:
        raise ImageError("expected image bytes, got an empty file (0 bytes)", reason="empty-image")
    check_byte_count(len(data), cfg)
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageError(_describe_unknown(data), reason="unknown-format")
    buffered, meta = scan_jpeg(data) if fmt == "JPEG" else (False, png_metadata_bytes(data))
    check_metadata(fmt, len(data), meta, cfg.max_decode_bytes)  # before Pillow copies any of it
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=[fmt])
            width, height = img.size
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageError(
                f"image header declares too many pixels for the decoder limit: {e}",
                reason="image-too-large",
            ) from e
        except UnidentifiedImageError as e:
            raise ImageError(
                f"expected a decodable {fmt} header, got data the decoder cannot identify",
                reason="corrupt-image" if len(data) > 64 else "truncated-image",
            ) from e
        except (OSError, SyntaxError, ValueError, EOFError, struct.error) as e:
            raise ImageError(f"{fmt} header unreadable: {e}", reason=_reason_for(e)) from e
        _check_size(width, height, cfg)
        try:
            coef = 0
            if buffered:
                coef = jpeg_coefficient_bytes(width, height, [(h, v) for _, h, v, _ in
                                                              getattr(img, "layer", [])])
            plan = plan_decode(fmt, width, height, img.mode, input_bytes=len(data),
                               budget_bytes=cfg.max_decode_bytes, work_side_px=cfg.work_side_px,
                               min_side_px=cfg.min_side_px, coef_bytes=coef, metadata_bytes=meta)
            if plan.scale > 1:
                img.draft("RGB", (max(1, width // plan.scale), max(1, height // plan.scale)))
                if img.size[0] * img.size[1] > plan.width * plan.height * plan.reduce**2:
                    raise ImageError(  # pragma: no cover - Pillow picks the planned scale
                        f"JPEG draft: expected 1/{plan.scale} scale, got {img.size}", reason="corrupt-image")
            img.load()
            rgb = _to_rgb(img, plan.reduce, _orientation(img))
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageError(f"decompression limit exceeded: {e}", reason="image-too-large") from e
        except MemoryError as e:
            raise ImageError("image too large to decode in memory", reason="image-too-large") from e
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError,
                zlib.error, struct.error) as e:
            raise ImageError(f"cannot decode {fmt} data: {e}", reason=_reason_for(e)) from e
        finally:
            img.close()
    if min(rgb.shape[:2]) < cfg.min_side_px:
        raise ImageError(
            f"expected both sides >= {cfg.min_side_px} px, got {rgb.shape[1]}x{rgb.shape[0]}",
            reason="image-too-small",
        )
    return rgb


def _reason_for(e: BaseException) -> str:
    text = str(e).lower()
    if "truncated" in text or "premature end" in text or isinstance(e, EOFError) \
            or "end of file" in text or "buffer is not large enough" in text:
        return "truncated-image"
    return "corrupt-image"


def _check_size(width: int, height: int, cfg: DecodeConfig) -> None:
    if width < 1 or height < 1:
        raise ImageError(f"expected a positive image size, got {width}x{height}", reason="corrupt-image")
    if width * height > cfg.max_pixels:
        raise ImageError(
            f"expected at most {cfg.max_pixels} pixels, header declares {width}x{height} "
            f"= {width * height} (refused before decoding)",
            reason="image-too-large",
        )
    if min(width, height) < cfg.min_side_px:
        raise ImageError(
            f"expected both sides >= {cfg.min_side_px} px, got {width}x{height}",
            reason="image-too-small",
        )


def _orientation(img: Image.Image) -> int:
    """EXIF orientation 1..8 (1 when absent or unreadable: keep the stored orientation)."""
    try:
        o = img.getexif().get(0x0112, 1)
    except (KeyError, ValueError, TypeError, SyntaxError, OSError, IndexError, struct.error):
        return 1
    return o if isinstance(o, int) and 1 <= o <= 8 else 1


def _place(out: npt.NDArray[np.uint8], t: npt.NDArray[np.uint8], r0: int, orientation: int,
           rows: int) -> None:
    """Write strip ``t`` (rows r0.. of the stored image, ``rows`` rows in all) into ``out``,
    oriented as EXIF ``orientation`` says (as ``ImageOps.exif_transpose`` would)."""
    r1 = r0 + t.shape[0]
    a, b = rows - r1, rows - r0          # the strip's rows counted from the bottom
    if orientation == 1:
        out[r0:r1] = t
    elif orientation == 2:
        out[r0:r1] = t[:, ::-1]
    elif orientation == 3:
        out[a:b] = t[::-1, ::-1]
    elif orientation == 4:
        out[a:b] = t[::-1]
    else:
        tt = t.transpose(1, 0, 2)
        if orientation == 5:
            out[:, r0:r1] = tt
        elif orientation == 6:
            out[:, a:b] = tt[:, ::-1]
        elif orientation == 7:
            out[:, a:b] = tt[::-1, ::-1]
        else:
            out[:, r0:r1] = tt[::-1]


def _to_rgb(img: Image.Image, reduce: int = 1, orientation: int = 1) -> npt.NDArray[np.uint8]:
    """``HxWx3 uint8`` of a loaded image, box-reduced by ``reduce`` and oriented, converted
    one strip of rows at a time into the output (peak: the raster + the output + a strip)."""
    width, height = img.size
    out_w, out_h = -(-width // reduce), -(-height // reduce)
    shape = (out_w, out_h, 3) if orientation >= 5 else (out_h, out_w, 3)
    out = np.empty(shape, dtype=np.uint8)
    top = None
    if img.mode == "I":
        _lo, hi = img.getextrema()
        top = 65535.0 if float(hi) > 255 else 255.0  # type: ignore[arg-type]
    rows = strip_rows(width, raster_bpp(img.mode), reduce)
    for y0 in range(0, height, rows):
        t = _strip_rgb(img.crop((0, y0, width, min(height, y0 + rows))), top)
        if reduce > 1:
            t = np.asarray(Image.fromarray(t).reduce(reduce))
        _place(out, t, y0 // reduce, orientation, out_h)
    return out


def _strip_rgb(img: Image.Image, top: float | None) -> npt.NDArray[np.uint8]:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img).astype(np.float32)
        scale = 65535.0 if mode.startswith("I;16") else (top or 255.0)
        gray = np.clip(np.rint(arr * (255.0 / scale)), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        gray = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    out = np.asarray(img.convert("RGB"), dtype=np.uint8)
    if out.ndim != 3 or out.shape[2] != 3:  # pragma: no cover - Pillow guarantees RGB
        raise ImageError(f"expected an RGB image after conversion, got shape {out.shape}",
                         reason="corrupt-image")
    return np.ascontiguousarray(out)


class FrameImage:
    """An RGB frame plus its Pillow copy, made at most once per frame and shared by all warps.

    The pipeline warps one frame three times (detector view, FaceMesh crop, aligned face);
    converting the frame to a Pillow image once instead of once per warp is the cheap part
    of that work. Stays in RAM like the frame itself; :attr:`rgb` is the array given.
    """

    __slots__ = ("_image", "rgb")

    def __init__(self, rgb: npt.NDArray[np.uint8]) -> None:
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 frame, got shape {rgb.shape} dtype {rgb.dtype}")
        self.rgb = rgb
        self._image: Image.Image | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.rgb.shape)

    def image(self) -> Image.Image:
        if self._image is None:
            self._image = Image.fromarray(np.ascontiguousarray(self.rgb))
        return self._image


def warp_affine(
    img: npt.NDArray[np.uint8] | FrameImage, m: npt.ArrayLike, width: int, height: int,
    part: tuple[int, int, int, int] | None = None,
) -> npt.NDArray[np.uint8]:
    """Bilinear affine warp in Pillow's C code (the frame stays in RAM).

    Same contract as the numpy reference :func:`kycedge.vision.align.warp_affine_reference`: ``m``
    (2x3) maps source pixels to output pixels with pixel centres at integer coordinates
    (OpenCV convention), samples outside the source are black. When the warp shrinks by
    more than 2x, the source region the output covers is first box-reduced by an integer
    factor (``Image.reduce``) so that the result does not alias. ``img`` may be a
    :class:`FrameImage` so that several warps of one frame share one Pillow image; a bare
    array is converted for this call only (only the region the output covers is copied).
    ``part`` = (x0, y0, x1, y1) computes only that rectangle of the ``width`` x ``height``
    output, with the whole output's source region and reduction grid: the same pixels as
    slicing the whole output, except that a sample falling exactly on the pixel grid can
    come out 1 level apart (its position is rounded differently; seen only for synthetic
    round-number scales, never on the lfw-dev or fixture faces, ADR 0012 "Speed").
    """
    a = np.vstack([np.asarray(m, dtype=np.float64).reshape(2, 3), [0.0, 0.0, 1.0]])
    h, w = img.shape[:2]
    scale = float(np.sqrt(abs(np.linalg.det(a[:2, :2]))))
    if not np.isfinite(scale) or scale <= 0.0:
        raise ValueError(f"expected an invertible affine matrix, got scale {scale}")
    inv = np.linalg.inv(a)
    k = int(np.floor(1.0 / scale)) if scale < 0.5 else 1
    pad = 3 + k
    corners = np.array([[0, 0, 1], [width - 1, 0, 1], [0, height - 1, 1], [width - 1, height - 1, 1]],
                       dtype=np.float64) @ inv[:2].T
    x_lo = min(max(int(np.floor(corners[:, 0].min())) - pad, 0), w - 1)
    x_hi = max(min(int(np.ceil(corners[:, 0].max())) + pad, w), x_lo + 1)
    y_lo = min(max(int(np.floor(corners[:, 1].min())) - pad, 0), h - 1)
    y_hi = max(min(int(np.ceil(corners[:, 1].max())) + pad, h), y_lo + 1)
    reduce = k > 1 and min(x_hi - x_lo, y_hi - y_lo) >= k
    # the coefficients are computed for the region (as if it were copied out), so that a
    # FrameImage and a bare array give the same result; ``shift`` moves them onto the frame
    shift_x = shift_y = 0.0
    if not isinstance(img, FrameImage):
        region = Image.fromarray(np.ascontiguousarray(img[y_lo:y_hi, x_lo:x_hi]))
        if reduce:
            region = region.reduce(k)
    elif reduce:
        region = img.image().reduce(k, box=(x_lo, y_lo, x_hi, y_hi))
    else:
        region, shift_x, shift_y = img.image(), float(x_lo), float(y_lo)  # no copy
    # region pixel (u, v) is source pixel (u + x_lo, v + y_lo)
    a = a @ np.array([[1.0, 0.0, x_lo], [0.0, 1.0, y_lo], [0.0, 0.0, 1.0]])
    if reduce:
        # reduced pixel u covers region pixels k*u .. k*u + k - 1: centre k*u + (k - 1) / 2
        a = a @ np.array([[k, 0.0, (k - 1) / 2.0], [0.0, k, (k - 1) / 2.0], [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(a)
    ia, ib, ic = inv[0]
    id_, ie, if_ = inv[1]
    # Pillow samples output pixel centre (x + .5, y + .5) and puts input pixel centres at + .5
    coeffs = (ia, ib, ic + 0.5 - 0.5 * (ia + ib) + shift_x,
              id_, ie, if_ + 0.5 - 0.5 * (id_ + ie) + shift_y)
    size = (width, height)
    if part is not None:
        px0, py0, px1, py1 = part
        if not (0 <= px0 < px1 <= width and 0 <= py0 < py1 <= height):
            raise ValueError(f"expected a part inside the {width}x{height} output, got {part}")
        # output pixel (u, v) of the part is (u + px0, v + py0) of the whole output
        coeffs = (ia, ib, coeffs[2] + ia * px0 + ib * py0, id_, ie, coeffs[5] + id_ * px0 + ie * py0)
        size = (px1 - px0, py1 - py0)
    out = region.transform(size, Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)
    return np.asarray(out)


def encode_preview(rgb: npt.NDArray[np.uint8], max_side: int = 320, quality: int = 60) -> bytes:
    """A small JPEG of a frame for the operator-enabled live preview, in memory only.

    Never written anywhere: the caller hands the bytes to the local API, which serves
    them ``no-store``. Pure apart from Pillow; ``max_side`` bounds the longer side.
    """
    img = Image.fromarray(np.ascontiguousarray(rgb[..., :3]), "RGB")
    img.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=quality)
    return out.getvalue()
