"""Replay source: directories of images (decoder injected or real) and .y4m videos."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kycedge.core.errors import CaptureError, ImageError
from kycedge.unit.capture.base import SourceClosedError
from kycedge.unit.capture.replay import ReplaySource, parse_y4m_header, yuv_to_rgb


def fake_decoder(data: bytes) -> np.ndarray:
    """'images' are one byte: the grey level; b'bad' does not decode."""
    if data == b"bad":
        raise ImageError("not an image", reason="truncated-image")
    return np.full((4, 6, 3), data[0], dtype=np.uint8)


def write(d: Path, name: str, data: bytes) -> None:
    (d / name).write_bytes(data)


def test_directory_loops_in_name_order_and_returns_owned_copies(tmp_path: Path) -> None:
    write(tmp_path, "b.png", bytes([20]))
    write(tmp_path, "a.jpg", bytes([10]))
    write(tmp_path, "notes.txt", b"ignored")
    src = ReplaySource(tmp_path, decoder=fake_decoder)
    src.open()
    seen = [int(src.read().rgb[0, 0, 0]) for _ in range(5)]
    assert seen == [10, 20, 10, 20, 10]
    f = src.read()
    f.rgb[:] = 0  # the caller owns it: scribbling must not change the next loop
    src.read()
    assert int(src.read().rgb[0, 0, 0]) == 20
    assert "Frame(seq=" in repr(f)
    assert "[" not in repr(f)
    src.close()
    with pytest.raises(SourceClosedError):
        src.read()


def test_undecodable_files_are_skipped_and_all_bad_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "a.png", b"bad")
    write(tmp_path, "b.png", bytes([7]))
    src = ReplaySource(tmp_path, decoder=fake_decoder)
    src.open()
    assert {int(src.read().rgb[0, 0, 0]) for _ in range(3)} == {7}
    (tmp_path / "b.png").unlink()
    with pytest.raises(CaptureError, match="none of 1 image files decoded"):
        src.open()  # re-scans the directory on open


def test_directory_rescanned_on_open(tmp_path: Path) -> None:
    write(tmp_path, "a.png", bytes([1]))
    src = ReplaySource(tmp_path, decoder=fake_decoder)
    src.open()
    assert int(src.read().rgb[0, 0, 0]) == 1
    (tmp_path / "a.png").unlink()
    write(tmp_path, "z.png", bytes([2]))
    src.open()
    assert int(src.read().rgb[0, 0, 0]) == 2


def test_uncached_mode_decodes_on_each_read(tmp_path: Path) -> None:
    write(tmp_path, "a.png", bytes([1]))
    write(tmp_path, "b.png", bytes([2]))
    src = ReplaySource(tmp_path, decoder=fake_decoder, cache_max_bytes=10)
    src.open()
    assert [int(src.read().rgb[0, 0, 0]) for _ in range(3)] == [1, 2, 1]


def test_missing_or_empty_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="missing path") as e:
        ReplaySource(tmp_path / "nope", decoder=fake_decoder).open()
    assert e.value.reason == "capture-unavailable"
    with pytest.raises(CaptureError, match="found none"):
        ReplaySource(tmp_path, decoder=fake_decoder).open()


def test_real_decoder_on_the_fixture_faces(faces_dir: Path) -> None:
    pytest.importorskip("kycedge.vision.decode")
    src = ReplaySource(faces_dir)
    src.open()
    frames = [src.read() for _ in range(5)]
    assert all(f.rgb.dtype == np.uint8 and f.rgb.ndim == 3 and f.rgb.shape[2] == 3 for f in frames)
    src.close()


def rgb_to_yuv444(rgb: np.ndarray) -> bytes:
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    u = (b - y) / 1.772
    v = (r - y) / 1.402
    yq = np.clip(np.round(16 + y * 219 / 255), 0, 255).astype(np.uint8)
    uq = np.clip(np.round(128 + u * 224 / 255), 0, 255).astype(np.uint8)
    vq = np.clip(np.round(128 + v * 224 / 255), 0, 255).astype(np.uint8)
    return yq.tobytes() + uq.tobytes() + vq.tobytes()


def test_y4m_444_round_trip_and_loop(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (8, 10, 3), dtype=np.uint8) for _ in range(2)]
    buf = io.BytesIO()
    buf.write(b"YUV4MPEG2 W10 H8 F25:1 Ip A1:1 C444\n")
    for f in frames:
        buf.write(b"FRAME\n" + rgb_to_yuv444(f))
    p = tmp_path / "clip.y4m"
    p.write_bytes(buf.getvalue())
    src = ReplaySource(p)
    src.open()
    got = [src.read().rgb for _ in range(3)]
    for g, want in zip(got, [*frames, frames[0]], strict=True):
        assert g.shape == (8, 10, 3)
        assert np.abs(g.astype(int) - want.astype(int)).max() <= 3
    src.close()


def test_y4m_420_and_mono(tmp_path: Path) -> None:
    y = np.full((4, 6), 235, np.uint8)
    u = np.full((2, 3), 128, np.uint8)
    p = tmp_path / "w.y4m"
    p.write_bytes(b"YUV4MPEG2 W6 H4 C420jpeg\nFRAME\n" + y.tobytes() + u.tobytes() + u.tobytes())
    src = ReplaySource(p)
    src.open()
    assert (src.read().rgb == 255).all()
    src.close()
    assert (yuv_to_rgb(np.full((2, 2), 16, np.uint8), None, None) == 0).all()


def test_y4m_truncated_frame(tmp_path: Path) -> None:
    p = tmp_path / "t.y4m"
    p.write_bytes(b"YUV4MPEG2 W6 H4 C444\nFRAME\n" + b"\x10" * 30)
    src = ReplaySource(p)
    src.open()
    with pytest.raises(CaptureError, match="truncated frame: expected 72 bytes, got 30"):
        src.read()
    src.close()


@given(st.binary(max_size=80))
def test_y4m_header_parser_only_raises_capture_error(data: bytes) -> None:
    try:
        w, h, c = parse_y4m_header(data)
    except CaptureError as e:
        assert e.reason == "bad-video"  # noqa: PT017 - property test over any bytes
    else:
        assert w > 0
        assert h > 0
        assert c in ("420", "422", "444", "mono")


def test_directory_with_a_clip_and_images(tmp_path: Path) -> None:
    y = np.full((4, 6), 16, np.uint8)
    u = np.full((4, 6), 128, np.uint8)
    (tmp_path / "b-clip.y4m").write_bytes(b"YUV4MPEG2 W6 H4 C444\n" + (b"FRAME\n" + y.tobytes() + u.tobytes()
                                                                     + u.tobytes()) * 2)
    (tmp_path / "c-broken.y4m").write_bytes(b"not a video\n")
    write(tmp_path, "a.png", bytes([200]))
    src = ReplaySource(tmp_path, decoder=fake_decoder)
    src.open()
    seen = [int(src.read().rgb[0, 0, 0]) for _ in range(4)]
    assert seen == [200, 0, 0, 200]  # the image, both clip frames, loop
    with pytest.raises(CaptureError, match=r"point replay_path at the \.y4m file"):
        ReplaySource(tmp_path, decoder=fake_decoder, cache_max_bytes=80).open()


def test_frames_larger_than_the_configured_camera_are_scaled_down(tmp_path: Path) -> None:
    from kycedge.unit.capture.replay import fit_within

    img = np.zeros((40, 100, 3), np.uint8)
    img[:, 50:] = 200
    small = fit_within(img, 50, 50)
    assert small.shape == (20, 50, 3)
    assert int(small[0, 0, 0]) == 0
    assert int(small[0, -1, 0]) == 200
    assert fit_within(img, 200, 200) is img
    write(tmp_path, "a.png", bytes([9]))
    src = ReplaySource(tmp_path, decoder=lambda b: np.full((30, 60, 3), b[0], np.uint8), max_size=(20, 20))
    src.open()
    f = src.read()
    assert f.rgb.shape == (10, 20, 3)
    assert int(f.rgb.max()) == 9


def test_unchanged_files_are_not_decoded_again_on_reopen(tmp_path: Path) -> None:
    calls: list[bytes] = []

    def counting(data: bytes) -> np.ndarray:
        calls.append(data)
        return fake_decoder(data)

    write(tmp_path, "a.png", bytes([1]))
    src = ReplaySource(tmp_path, decoder=counting)
    src.open()
    src.open()
    assert len(calls) == 1
    write(tmp_path, "b.png", bytes([2]))
    src.open()
    assert len(calls) == 2
    assert sorted(int(src.read().rgb[0, 0, 0]) for _ in range(2)) == [1, 2]


def _reference_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The whole-frame conversion, written plainly (float64): the banded one must agree."""
    h, w = y.shape
    ry, rx = -(-h // u.shape[0]), -(-w // u.shape[1])
    yf = (y.astype(np.float64) - 16.0) * 255.0 / 219.0
    uf = (np.repeat(np.repeat(u, ry, 0), rx, 1)[:h, :w].astype(np.float64) - 128.0) * 255.0 / 224.0
    vf = (np.repeat(np.repeat(v, ry, 0), rx, 1)[:h, :w].astype(np.float64) - 128.0) * 255.0 / 224.0
    rgb = np.stack([yf + 1.402 * vf, yf - 0.344136 * uf - 0.714136 * vf, yf + 1.772 * uf], axis=-1)
    return np.rint(np.clip(rgb, 0, 255)).astype(np.uint8)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 90), st.integers(1, 40), st.sampled_from([(1, 1), (2, 1), (2, 2)]),
       st.integers(0, 2**31))
def test_yuv_to_rgb_in_bands_equals_the_whole_frame_conversion(h: int, w: int, sub: tuple[int, int],
                                                               seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 256, (h, w), dtype=np.uint8)
    u = rng.integers(0, 256, (-(-h // sub[0]), -(-w // sub[1])), dtype=np.uint8)
    v = rng.integers(0, 256, u.shape, dtype=np.uint8)
    got = yuv_to_rgb(y, u, v)
    assert got.shape == (h, w, 3)
    # float32 vs float64 rounding may differ by one level at a .5 boundary, nowhere more
    assert int(np.abs(got.astype(np.int16) - _reference_rgb(y, u, v)).max()) <= 1
    grey = yuv_to_rgb(y, None, None)
    assert (grey[..., 0] == grey[..., 2]).all()
    assert (grey[..., 0] == np.rint(np.clip((y - 16.0) * 255.0 / 219.0, 0, 255))).all()


def test_yuv_to_rgb_of_a_camera_frame_needs_no_frame_sized_scratch() -> None:
    import tracemalloc

    y = np.full((720, 1280), 120, np.uint8)
    u = np.full((360, 640), 100, np.uint8)
    v = np.full((360, 640), 150, np.uint8)
    tracemalloc.start()
    try:
        out = yuv_to_rgb(y, u, v)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the output itself (2.76 MB) plus band scratch; a whole-frame float plane is 3.7 MB
    assert peak < out.nbytes + 2 * 2**20, peak
