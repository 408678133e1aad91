"""Decoding memory is bounded by bytes, not pixels: plan from the header, strip conversion.

Behaviour is asserted (refused or accepted, reductions chosen, pixels identical to a
whole-image conversion); the peak RSS of a child that decodes the worst accepted inputs
is checked against the 150 MB bound as a behavioural limit (``VmHWM`` of the child,
unaffected by this process). Figures per input: ``tools/bench_decode.py``.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kycedge.core.errors import ImageError
from kycedge.vision.decode import DecodeConfig, decode_image
from kycedge.vision.decode_plan import (
    jpeg_coefficient_bytes,
    plan_decode,
    png_metadata_bytes,
    scan_jpeg,
)
from PIL import Image, ImageOps

BUDGET = DecodeConfig().max_decode_bytes


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def zero_png(w: int, h: int, depth: int, color: int) -> bytes:
    """An all-zero PNG (a few hundred kB even for 40 MP)."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color]
    row = b"\x00" + bytes((w * channels * depth + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()
    plte = chunk(b"PLTE", bytes(768)) if color == 3 else b""
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0))
            + plte + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def reason_of(data: bytes, cfg: DecodeConfig | None = None) -> str:
    with pytest.raises(ImageError) as e:
        decode_image(data, cfg)
    return e.value.reason


def test_issue_png_refused_before_decoding() -> None:
    """The review's input: 400 kB, 6300x6300 16-bit RGBA, under max_pixels; it peaked at 1 GB."""
    data = zero_png(6300, 6300, 16, 6)
    assert len(data) < 500_000
    with pytest.raises(ImageError) as e:
        decode_image(data)
    assert e.value.reason == "image-too-large"
    assert "6300x6300 RGBA PNG needs about" in e.value.message
    assert "max_decode_bytes" in e.value.message


def test_large_images_reduced_to_the_work_side() -> None:
    gray = decode_image(zero_png(6300, 6300, 8, 0))                # 1 B/px raster fits; output reduced
    assert gray.shape == (2100, 2100, 3)
    big_jpeg = encode(Image.new("RGB", (4400, 4200), (200, 10, 10)), "JPEG", quality=70)
    rgb = decode_image(big_jpeg)                                   # DCT scale 1/2 (as before)
    assert rgb.shape == (2100, 2200, 3)
    assert abs(int(rgb[100, 100, 0]) - 200) < 8


def test_budget_forces_a_smaller_jpeg_scale() -> None:
    data = encode(Image.new("RGB", (6000, 1500), (0, 90, 0)), "JPEG", quality=70)
    assert decode_image(data).shape == (1500, 6000, 3)              # fits the default budget
    # 1/1: 36 MB raster + 27 MB output + 12 MB of strip temporaries > 32 MiB; 1/2 fits
    small = DecodeConfig(max_decode_bytes=32 * 2**20)
    assert decode_image(data, small).shape == (750, 3000, 3)


def test_progressive_jpeg_counts_its_coefficient_buffer() -> None:
    img = Image.new("RGB", (1000, 800), (10, 20, 30))
    base, prog = encode(img, "JPEG"), encode(img, "JPEG", progressive=True)
    assert scan_jpeg(base)[0] is False
    assert scan_jpeg(prog)[0] is True
    # 4:2:0: 3 bytes per pixel at full resolution, whatever the DCT scale
    assert jpeg_coefficient_bytes(1000, 800, [(2, 2), (1, 1), (1, 1)]) == 63 * 50 * 6 * 128
    with pytest.raises(ImageError, match="JPEG coefficient buffer"):
        plan_decode("JPEG", 6300, 6300, "RGB", input_bytes=0, budget_bytes=BUDGET, work_side_px=2048,
                    min_side_px=32, coef_bytes=jpeg_coefficient_bytes(6300, 6300, [(1, 1)] * 3))


def test_multi_scan_sequential_jpeg_counts_as_buffered() -> None:
    base = encode(Image.new("RGB", (64, 64)), "JPEG")
    i = base.index(b"\xff\xda")
    ns = base[i + 4]
    assert ns == 3
    first_scan_one_component = base[:i + 4] + bytes([1]) + base[i + 5:]
    assert scan_jpeg(first_scan_one_component)[0] is True
    assert scan_jpeg(b"\xff\xd8\xff\xe0\x00")[0] is True           # cut in a marker: conservative


def test_metadata_counted_and_refused_early() -> None:
    jpeg = encode(Image.new("RGB", (64, 64)), "JPEG")
    app = b"\xff\xe3" + struct.pack(">H", 65535) + bytes(65533)
    fat = jpeg[:2] + app * 600 + jpeg[2:]                          # 39 MB of APP3 segments
    assert 600 * 65535 <= scan_jpeg(fat)[1] <= 600 * 65535 + 100   # + the encoder's own APP0
    with pytest.raises(ImageError, match="MB of metadata segments"):
        decode_image(fat, DecodeConfig(max_bytes=64 * 2**20))
    png = zero_png(64, 64, 8, 2)
    extra = chunk(b"teXt", b"k\x00" + b"v" * 1000)
    assert png_metadata_bytes(png[:33] + extra + png[33:]) == png_metadata_bytes(png) + 1002


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_exif_transpose(orientation: int) -> None:
    rnd = np.random.default_rng(orientation).integers(0, 256, (23, 37, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(Image.fromarray(rnd), "PNG", exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    got = decode_image(data, DecodeConfig(min_side_px=8))
    assert got.shape == expected.shape
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "I;16", "RGB"])
def test_strips_equal_a_whole_image_conversion(mode: str) -> None:
    """An image of many strips (2 MB each) converts exactly like the whole image at once."""
    rnd = np.random.default_rng(7).integers(0, 256, (700, 1900, 4), dtype=np.uint8)
    img = Image.fromarray(rnd, "RGBA")
    if mode == "I;16":
        img = Image.fromarray(rnd[:, :, 0].astype(np.uint16) * 257)
    elif mode != "RGBA":
        img = img.convert(mode)
    data = encode(img, "PNG", transparency=3) if mode == "P" else encode(img, "PNG")
    ref = Image.open(io.BytesIO(data))
    if ref.mode in ("RGBA", "LA") or (ref.mode == "P" and "transparency" in ref.info):
        rgba = ref.convert("RGBA")
        expected = np.asarray(Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
                              .convert("RGB"))
    elif ref.mode.startswith("I"):
        g = np.clip(np.rint(np.asarray(ref).astype(np.float32) * (255.0 / 65535.0)), 0, 255)
        expected = np.repeat(g.astype(np.uint8)[:, :, None], 3, axis=2)
    else:
        expected = np.asarray(ref.convert("RGB"))
    assert np.array_equal(decode_image(data), expected)


MODES = ["1", "L", "P", "I;16", "I", "F", "RGB", "RGBA", "LA", "CMYK"]


@given(st.sampled_from(["JPEG", "PNG"]), st.integers(32, 40_000), st.integers(32, 40_000),
       st.sampled_from(MODES), st.integers(0, 32 * 2**20), st.integers(0, 300 * 2**20))
def test_plan_fits_the_budget_or_refuses(fmt: str, w: int, h: int, mode: str, input_bytes: int,
                                         coef: int) -> None:
    if w * h > 40_000_000:
        return
    try:
        plan = plan_decode(fmt, w, h, mode, input_bytes=input_bytes, budget_bytes=BUDGET,
                           work_side_px=2048, min_side_px=32, coef_bytes=coef if fmt == "JPEG" else 0)
    except ImageError as e:
        reason = e.reason
        assert reason == "image-too-large"
        return
    assert plan.peak_bytes <= BUDGET
    assert min(plan.width, plan.height) >= 32
    assert plan.scale in (1, 2, 4, 8)
    assert plan.reduce >= 1


CHILD = r"""
import json, sys
from kycedge.core.errors import ImageError
from kycedge.vision.decode import decode_image

def hwm_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

out = {}
for path in sys.argv[1:]:
    data = open(path, "rb").read()
    try:
        out[path] = list(decode_image(data).shape)
    except ImageError as e:
        out[path] = e.reason
    del data
out["peak_mb"] = hwm_mb()
print(json.dumps(out))
"""


@pytest.mark.slow
def test_worst_accepted_inputs_peak_under_150_mb(tmp_path: Path) -> None:
    """One child decodes the inputs that came closest to the budget in tools/bench_decode.py
    (and the review's refused one); its peak RSS stays <= 150 MB."""
    inputs = {
        "rgba16.png": zero_png(6300, 6300, 16, 6),                 # refused (was 1 GB)
        "gray16.png": zero_png(6300, 6300, 16, 0),                 # accepted, reduced
        "palette.png": zero_png(6300, 6300, 8, 3),
        "rgb-12mp.png": zero_png(4000, 3000, 8, 2),                # accepted at full size
        "jpeg-12mp.jpg": encode(Image.new("RGB", (4056, 3040), (90, 90, 90)), "JPEG"),
        "jpeg-cmyk.jpg": encode(Image.new("CMYK", (6300, 6300), (1, 2, 3, 4)), "JPEG"),
    }
    paths = []
    for name, data in inputs.items():
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    res = subprocess.run([sys.executable, "-c", CHILD, *paths], capture_output=True, text=True,
                         timeout=300, check=True)
    out = json.loads(res.stdout)
    assert out[paths[0]] == "image-too-large"
    assert out[paths[1]] == [1575, 1575, 3]
    assert out[paths[3]] == [3000, 4000, 3]
    assert out[paths[4]] == [3040, 4056, 3]
    assert out[paths[5]] == [3150, 3150, 3]
    assert out["peak_mb"] <= 150, out
