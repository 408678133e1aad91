"""How much memory decoding an image takes, decided from its header before any pixel: pure.

Decoding untrusted bytes holds, at its peak, the input bytes, the decoded raster (Pillow
stores ``RGB``, ``RGBA``, ``LA``, ``CMYK``, ``I`` and ``F`` in 4 bytes per pixel, ``L``
and ``P`` in 1, ``I;16`` in 2; 16-bit PNGs are stored in these 8-bit modes), the
``HxWx3`` output array, the temporaries of converting one strip of rows at a time, and
for a progressive or multi-scan JPEG the coefficient buffer libjpeg keeps for the whole
image at full resolution (128 bytes per 8x8 block per component), whatever the DCT scale.

:func:`plan_decode` picks the smallest reduction that keeps that sum within the
decoder's budget (``DecodeConfig.max_decode_bytes``): a JPEG DCT scale (1/2, 1/4, 1/8,
decoded at reduced size by libjpeg) and an integer box reduction of the raster applied
strip by strip. The work-side rule (large images reduced so that the shorter side stays
at least ``work_side_px``) applies to every format. An image that cannot fit even
reduced is refused (``image-too-large``) before it is decoded.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from kycedge.core.errors import ImageError

__all__ = [
    "STRIP_BYTES",
    "DecodePlan",
    "check_metadata",
    "jpeg_coefficient_bytes",
    "metadata_copies",
    "plan_decode",
    "png_metadata_bytes",
    "raster_bpp",
    "scan_jpeg",
    "strip_rows",
]

#: Raster bytes converted per strip (at least ``reduce`` rows).
STRIP_BYTES = 2 * 2**20
#: Temporaries per raster byte of a strip: crop, RGBA copy, white, composite, RGB, array.
STRIP_COPIES = 6
_MB = 1e6


def metadata_copies(fmt: str) -> int:
    """How many copies of its metadata bytes a decode holds at once (Pillow's behaviour:
    a JPEG's APP segments in ``applist``, the ICC parts and the joined profile; a PNG
    chunk as read plus the one kept)."""
    return 3 if fmt == "JPEG" else 2

_BPP = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2, "BGR;15": 2,
        "BGR;16": 2, "BGR;24": 3}


def raster_bpp(mode: str) -> int:
    """Bytes per pixel Pillow allocates for an image of ``mode`` (4 unless listed)."""
    return _BPP.get(mode, 4)


def strip_rows(width: int, bpp: int, reduce: int) -> int:
    """Rows per conversion strip: about :data:`STRIP_BYTES`, a multiple of ``reduce``."""
    rows = max(1, STRIP_BYTES // max(1, width * bpp))
    return max(reduce, rows // reduce * reduce)


def scan_jpeg(data: bytes) -> tuple[bool, int]:
    """(coefficient buffer needed, metadata bytes) from the markers before the first scan.

    libjpeg keeps a whole-image coefficient buffer for a progressive (or lossless,
    hierarchical, arithmetic-progressive) frame, or for a sequential one whose first scan
    does not carry every component (multi-scan). Metadata is every APPn and COM segment,
    which Pillow copies (``applist``, the joined ICC profile, EXIF). Marker data that
    cannot be followed counts as buffered (the conservative answer).
    """
    i, n = 2, len(data)
    components = 0
    meta = 0
    while i + 4 <= n:
        if data[i] != 0xFF:
            return True, meta
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # standalone markers
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        if length < 2:
            return True, meta
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:
            meta += length
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn
            if marker not in (0xC0, 0xC1, 0xC9):  # only baseline / extended sequential are single-pass
                return True, meta
            if i + 10 > n:
                return True, meta
            components = data[i + 9]
        elif marker == 0xDA:  # SOS: the first scan decides
            if i + 5 > n or components == 0:
                return True, meta
            return data[i + 4] < components, meta
        i += 2 + length
    return True, meta


def png_metadata_bytes(data: bytes) -> int:
    """Bytes of every PNG chunk but IDAT: Pillow reads each into memory (and keeps some)."""
    i, n, total = 8, len(data), 0
    while i + 8 <= n:
        (length,) = struct.unpack(">I", data[i:i + 4])
        kind = data[i + 4:i + 8]
        if kind != b"IDAT":
            total += min(length, n - i)
        if kind == b"IEND":
            break
        i += 12 + length
    return total


def jpeg_coefficient_bytes(width: int, height: int, sampling: list[tuple[int, int]]) -> int:
    """Bytes of libjpeg's whole-image coefficient buffer (2 bytes x 64 per block per component)."""
    if not sampling:
        return 0
    hmax = max(h for h, _ in sampling) or 1
    vmax = max(v for _, v in sampling) or 1
    mcu_x = math.ceil(width / (8 * hmax))
    mcu_y = math.ceil(height / (8 * vmax))
    return sum(mcu_x * h * mcu_y * v for h, v in sampling) * 128


@dataclass(frozen=True)
class DecodePlan:
    scale: int        # JPEG DCT scale denominator (1, 2, 4, 8); 1 for other formats
    reduce: int       # integer box reduction of the decoded raster
    width: int        # output size (before orientation)
    height: int
    peak_bytes: int   # estimated peak of the decode besides the interpreter


def _estimate(w: int, h: int, bpp: int, reduce: int, input_bytes: int, coef_bytes: int) -> int:
    """``input_bytes`` includes the metadata copies (see :func:`plan_decode`)."""
    raster = w * h * bpp
    out = math.ceil(w / reduce) * math.ceil(h / reduce) * 3
    strip = min(raster, strip_rows(w, bpp, reduce) * w * bpp) * STRIP_COPIES
    return input_bytes + max(coef_bytes + raster, raster + out + strip)


def check_metadata(fmt: str, input_bytes: int, metadata_bytes: int, budget_bytes: int) -> None:
    """Refuse, before the header is parsed, an image whose metadata alone would not fit."""
    need = input_bytes + metadata_bytes * metadata_copies(fmt)
    if need > budget_bytes:
        raise ImageError(
            f"expected an image that decodes within {budget_bytes / _MB:.0f} MB (max_decode_bytes), "
            f"this {fmt} carries {metadata_bytes / _MB:.0f} MB of metadata segments, about "
            f"{need / _MB:.0f} MB once the decoder has copied them; refused before decoding",
            reason="image-too-large")


def plan_decode(fmt: str, width: int, height: int, mode: str, *, input_bytes: int, budget_bytes: int,
                work_side_px: int, min_side_px: int, coef_bytes: int = 0,
                metadata_bytes: int = 0) -> DecodePlan:
    """The least reduction whose estimated peak fits ``budget_bytes``; ImageError if none does."""
    bpp = raster_bpp(mode)
    meta = metadata_bytes * metadata_copies(fmt)
    input_bytes += meta
    short = min(width, height)
    scales = (1, 2, 4, 8) if fmt == "JPEG" else (1,)
    # the work-side rule: reduce while the shorter side stays >= work_side_px
    s_work = max([s for s in scales if short // s >= work_side_px] or [1])
    best: DecodePlan | None = None
    for s in (s for s in scales if s >= s_work):
        w, h = math.ceil(width / s), math.ceil(height / s)
        k_work = max(1, min(w, h) // work_side_px) if s == s_work == 1 else 1
        k = k_work
        while min(w, h) // k >= min_side_px:
            peak = _estimate(w, h, bpp, k, input_bytes, coef_bytes)
            if peak <= budget_bytes:
                return DecodePlan(s, k, math.ceil(w / k), math.ceil(h / k), peak)
            if best is None or peak < best.peak_bytes:
                best = DecodePlan(s, k, math.ceil(w / k), math.ceil(h / k), peak)
            if w * h * bpp + input_bytes + coef_bytes > budget_bytes:
                break  # the raster alone does not fit: a box reduction cannot help
            k += 1
    need = best.peak_bytes if best is not None else _estimate(width, height, bpp, 1, input_bytes,
                                                                 coef_bytes)
    parts = [f"{coef_bytes / _MB:.0f} MB for a JPEG coefficient buffer"] if coef_bytes else []
    if meta >= _MB:
        parts.append(f"{meta / _MB:.0f} MB for copies of {metadata_bytes / _MB:.0f} MB of metadata")
    detail = f" ({', '.join(parts)})" if parts else ""
    raise ImageError(
        f"expected an image that decodes within {budget_bytes / _MB:.0f} MB (max_decode_bytes), "
        f"{width}x{height} {mode} {fmt} needs about {need / _MB:.0f} MB even at the largest "
        f"reduction{detail}; refused before decoding", reason="image-too-large")
