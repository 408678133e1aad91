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
16-bit images all become ``HxWx3 uint8`` RGB. Large JPEGs are decoded at a reduced DCT
scale (``draft``) so that memory follows what the detector needs, not the sensor size.

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
from PIL import Image, ImageOps, UnidentifiedImageError

from kycedge.core.config import section
from kycedge.core.errors import ImageError

__all__ = ["DecodeConfig", "FrameImage", "ImageError", "check_byte_count", "decode_image", "read_image_file",
           "sniff_format", "warp_affine"]

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
        help="JPEGs larger than this on both sides are decoded at a reduced DCT scale",
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
        chunks: list[bytes] = []
        left = cfg.max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as e:
        raise ImageError(f"{path}: cannot read: {e.strerror or e}", reason="unreadable-file") from e
    finally:
        os.close(fd)
    data = b"".join(chunks)
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
            if fmt == "JPEG" and min(width, height) > cfg.work_side_px:
                img.draft("RGB", (cfg.work_side_px, cfg.work_side_px))
            img.load()
            rgb = _to_rgb(_orient(img))
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageError(f"decompression limit exceeded: {e}", reason="image-too-large") from e
        except MemoryError as e:
            raise ImageError("image too large to decode in memory", reason="image-too-large") from e
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError,
                zlib.error, struct.error) as e:
            raise ImageError(f"cannot decode {fmt} data: {e}", reason=_reason_for(e)) from e
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


def _orient(img: Image.Image) -> Image.Image:
    try:
        out = ImageOps.exif_transpose(img)
    except (KeyError, ValueError, TypeError, SyntaxError, OSError, IndexError):
        return img  # unreadable EXIF: keep the stored orientation rather than refuse
    return out if out is not None else img


def _to_rgb(img: Image.Image) -> npt.NDArray[np.uint8]:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img).astype(np.float32)
        top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        gray = np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)
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
    img: npt.NDArray[np.uint8] | FrameImage, m: npt.ArrayLike, width: int, height: int
) -> npt.NDArray[np.uint8]:
    """Bilinear affine warp in Pillow's C code (the frame stays in RAM).

    Same contract as the numpy reference :func:`kycedge.vision.align.warp_affine_reference`: ``m``
    (2x3) maps source pixels to output pixels with pixel centres at integer coordinates
    (OpenCV convention), samples outside the source are black. When the warp shrinks by
    more than 2x, the source region the output covers is first box-reduced by an integer
    factor (``Image.reduce``) so that the result does not alias. ``img`` may be a
    :class:`FrameImage` so that several warps of one frame share one Pillow image; a bare
    array is converted for this call only (only the region the output covers is copied).
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
    out = region.transform((width, height), Image.Transform.AFFINE, coeffs,
                           resample=Image.Resampling.BILINEAR)
    return np.asarray(out)
