"""decode: every kind of bad image bytes gives ImageError with a specific reason."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kycedge.core.errors import ImageError
from kycedge.vision.decode import DecodeConfig, decode_image, sniff_format
from PIL import Image


def encode(img: Image.Image, fmt: str = "JPEG", **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def reason_of(data: bytes, cfg: DecodeConfig | None = None) -> str:
    with pytest.raises(ImageError) as e:
        decode_image(data, cfg)
    assert e.value.message  # a human message, not only a code
    return e.value.reason


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_with_header(width: int, height: int, idat: bytes = b"") -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))


def test_jpeg_and_png_decode_to_rgb(faces_dir: Path) -> None:
    rgb = decode_image((faces_dir / "obama.jpg").read_bytes())
    assert rgb.dtype == np.uint8
    assert rgb.ndim == 3
    assert rgb.shape[2] == 3
    assert rgb.shape[:2] == (1137, 910)
    png = decode_image((faces_dir / "astronaut.png").read_bytes())
    assert png.shape == (512, 512, 3)


def test_empty() -> None:
    assert reason_of(b"") == "empty-image"


def test_truncated_jpeg(faces_dir: Path) -> None:
    data = (faces_dir / "obama.jpg").read_bytes()
    assert reason_of(data[: len(data) // 2]) == "truncated-image"


def test_text_file() -> None:
    assert reason_of(b"name,id\nalice,42\n") == "unknown-format"
    assert reason_of(b"GIF89a" + b"\0" * 100) == "unknown-format"


def test_one_pixel() -> None:
    assert reason_of(encode(Image.new("RGB", (1, 1)), "PNG")) == "image-too-small"


def test_huge_png_header_refused_before_decoding() -> None:
    # 20000 x 20000 declared, a few bytes of pixel data: refused from the header alone
    data = png_with_header(20000, 20000, zlib.compress(b"\0" * 1000))
    assert len(data) < 2000
    assert reason_of(data) == "image-too-large"


def test_png_bomb() -> None:
    # a real zlib bomb: 9000 x 9000 RGB of zeros (243 MB raw) in a small file
    row = b"\0" + b"\0" * (9000 * 3)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(9000)) + comp.flush()
    data = png_with_header(9000, 9000, idat)
    assert len(data) < 400_000
    assert reason_of(data) == "image-too-large"
    # the same bomb under a limit that lets the header through still cannot exhaust memory:
    # the limit is the knob, and the default refuses it


def test_huge_jpeg_header(faces_dir: Path) -> None:
    small = encode(Image.new("RGB", (64, 64), (128, 100, 90)))
    sof = small.index(b"\xff\xc0")
    patched = small[: sof + 5] + struct.pack(">HH", 20000, 20000) + small[sof + 9:]
    assert reason_of(patched) == "image-too-large"


def test_file_too_large() -> None:
    cfg = DecodeConfig(max_bytes=2048)
    assert reason_of(b"\xff\xd8\xff" + b"\0" * 4096, cfg) == "file-too-large"


def test_garbage_after_magic() -> None:
    assert reason_of(b"\x89PNG\r\n\x1a\n" + b"\x00" * 200) in ("corrupt-image", "truncated-image")
    assert reason_of(b"\xff\xd8\xff" + b"\x13" * 300) in ("corrupt-image", "truncated-image")


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "RGBA", "LA", "I;16", "1"])
def test_modes_become_rgb(mode: str) -> None:
    base = Image.new("RGB", (80, 60), (200, 120, 40))
    img = base.convert(mode) if mode != "I;16" else Image.new("I;16", (80, 60), 40000)
    fmt = "JPEG" if mode in ("L", "CMYK") else "PNG"
    rgb = decode_image(encode(img, fmt))
    assert rgb.shape == (60, 80, 3)
    assert rgb.dtype == np.uint8
    if mode == "I;16":
        assert abs(int(rgb[0, 0, 0]) - round(40000 / 257)) <= 1  # scaled, not clipped to 255


def test_alpha_composited_on_white() -> None:
    img = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    rgb = decode_image(encode(img, "PNG"))
    assert rgb.min() == 255


def test_exif_orientation_applied(faces_dir: Path) -> None:
    upright = Image.open(faces_dir / "obama.jpg").convert("RGB")
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # pixels stored sideways
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    rgb = decode_image(encode(stored, exif=exif.tobytes()))
    assert rgb.shape[:2] == (upright.height, upright.width)
    plain = decode_image(encode(stored))
    assert plain.shape[:2] == (upright.width, upright.height)


def test_sniff() -> None:
    assert sniff_format(b"\xff\xd8\xff\xe0") == "JPEG"
    assert sniff_format(b"\x89PNG\r\n\x1a\n") == "PNG"
    assert sniff_format(b"BM") is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_only_image_error(data: bytes) -> None:
    try:
        out = decode_image(data)
    except ImageError:
        return
    assert out.ndim == 3  # pragma: no cover - random bytes are never a valid image


_SMALL = encode(Image.new("RGB", (48, 48), (90, 140, 200)), quality=80)
_SMALL_PNG = encode(Image.new("RGB", (48, 48), (90, 140, 200)), "PNG")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([_SMALL, _SMALL_PNG]), st.lists(
    st.tuples(st.integers(min_value=0, max_value=10_000), st.integers(0, 255)), max_size=8),
    st.integers(min_value=0, max_value=10_000))
def test_mutated_images_only_image_error(base: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(base)
    for pos, val in flips:
        data[pos % len(data)] = val
    if cut:
        data = data[: max(1, len(data) - cut % len(data))]
    try:
        out = decode_image(bytes(data))
    except ImageError:
        return
    assert out.dtype == np.uint8
    assert out.ndim == 3
    assert out.shape[2] == 3


def test_io_bytesio_not_accepted() -> None:
    with pytest.raises(ImageError):
        decode_image(io.BytesIO(b"x"))  # type: ignore[arg-type]


def test_warp_part_is_the_slice_of_the_whole_warp() -> None:
    from kycedge.vision.decode import FrameImage, warp_affine

    rng = np.random.default_rng(12)
    img = rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    frame = FrameImage(img)
    # generic similarities (face-like: rotated, any scale, incl. box-reduced ones): bit for bit
    for scale, angle in ((1.17, 0.07), (0.8, 0.3), (0.35, -0.2), (0.2, 0.1), (0.43, 0.01)):
        c, s = scale * np.cos(angle), scale * np.sin(angle)
        m = np.array([[c, -s, 56.3 - (c * 320 - s * 240)], [s, c, 55.9 - (s * 320 + c * 240)]])
        for src in (img, frame):
            whole = warp_affine(src, m, 112, 112)
            part = warp_affine(src, m, 112, 112, part=(22, 22, 89, 103))
            assert part.shape == (81, 67, 3)
            assert np.array_equal(part, whole[22:103, 22:89]), (scale, angle)
    # a round-number scale puts samples exactly on the pixel grid: a few values 1 level apart
    m = np.array([[1.3, 0.0, 56.0 - 1.3 * 320], [0.0, 1.3, 56.0 - 1.3 * 240]])
    diff = np.abs(warp_affine(frame, m, 112, 112)[22:103, 22:89].astype(int)
                  - warp_affine(frame, m, 112, 112, part=(22, 22, 89, 103)).astype(int))
    assert diff.max() <= 1
    assert np.count_nonzero(diff) < 0.01 * diff.size
    with pytest.raises(ValueError, match="part"):
        warp_affine(img, np.eye(2, 3), 112, 112, part=(0, 0, 113, 10))
