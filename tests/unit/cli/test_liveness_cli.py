"""``kycedge liveness``: clips of a simulated head and a simulated print, as .y4m and as frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


def _yuv444(rgb: np.ndarray) -> bytes:
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    u, v = (b - y) / 1.772, (r - y) / 1.402
    planes = (16 + y * 219 / 255, 128 + u * 224 / 255, 128 + v * 224 / 255)
    return b"".join(np.clip(np.round(p), 0, 255).astype(np.uint8).tobytes() for p in planes)


def _write_y4m(path: Path, frames: list[np.ndarray], fps: int = 15) -> None:
    h, w = frames[0].shape[:2]
    with path.open("wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C444\n".encode())
        for fr in frames:
            f.write(b"FRAME\n" + _yuv444(fr))


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> dict[str, Path]:
    from kycedge.vision import Pipeline, default_models_dir

    models = default_models_dir()
    if not (models / "manifest.json").exists():
        pytest.skip(f"no model manifest at {models}")
    from kycedge.lab.liveness_sim.build import attacker, portrait_mesh, subject
    from kycedge.vision.decode import decode_image
    from kycedge.vision.liveness.observe import load_observer

    pipe = Pipeline.load(models)
    photo = decode_image((faces_dir / "obama2.jpg").read_bytes())
    pm = portrait_mesh(pipe, load_observer(pipe.manifest), photo)
    assert pm is not None
    root = tmp_path_factory.mktemp("clips")
    out: dict[str, Path] = {}
    times = [i / 15 for i in range(24)]
    for name, perf in (("head", subject(*pm, np.random.default_rng(1))),
                       ("print", attacker(*pm, "print", np.random.default_rng(2)))):
        perf.spontaneous_blink_s = 0.0
        perf.latency_s = (0.0, 0.0)
        perf.on_prompt("liveness-turn-left", 0.1)
        out[name] = root / f"{name}.y4m"
        frames = [perf.frame(t) for t in times]
        _write_y4m(out[name], frames)
        if name == "head":
            # the same turning head as a screen with a cool white point would show it
            cool = [np.clip(f * np.array([0.72, 0.95, 1.3]), 0, 255).astype(np.uint8) for f in frames]
            out["cool"] = root / "cool.y4m"
            _write_y4m(out["cool"], cool)
            # a phone held up beside the head: a second, smaller face (biden.jpg's face, about
            # 75 px wide) in the free right part of every 400 x 300 frame
            other = decode_image((faces_dir / "biden.jpg").read_bytes())[100:650, 350:800]
            ys = np.linspace(0, other.shape[0] - 1, 110).astype(int)
            xs = np.linspace(0, other.shape[1] - 1, 90).astype(int)
            phone = other[ys][:, xs]
            two = [f.copy() for f in frames]
            for f in two:
                f[40:150, 300:390] = phone
            out["two"] = root / "two.y4m"
            _write_y4m(out["two"], two)
            # the same head inside a player's window on a monitor: dark bars beside the face
            # and a dark strip below it, across the body
            framed = [f.copy() for f in frames]
            for f in framed:
                f[:, 95:115] = 15
                f[:, 300:320] = 15
                f[255:275, 95:320] = 15
            out["framed"] = root / "framed.y4m"
            _write_y4m(out["framed"], framed)
    still = subject(*pm, np.random.default_rng(3))
    still.spontaneous_blink_s = 0.0
    out["still"] = root / "still.y4m"
    _write_y4m(out["still"], [still.frame(t) for t in times[:10]])
    out["bad"] = root / "bad.y4m"
    out["bad"].write_bytes(b"not a video")
    return out


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    from kycedge.unit.cli import main

    assert main(["liveness", "--json", *argv]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_head_is_bona_fide_print_is_attack_still_and_bad_are_no_decision(
        clips: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    lines = _run([str(clips[k]) for k in ("head", "print", "still", "bad")], capsys)
    by = {Path(str(d["path"])).stem: d for d in lines}
    assert [Path(str(d["path"])).stem for d in lines] == ["head", "print", "still", "bad"]  # input order
    assert set(lines[0]) >= {"path", "decision", "reason", "score"}
    assert by["head"]["decision"] == "bona-fide", by["head"]
    assert by["head"]["reason"] == "parallax-3d"
    assert by["print"]["decision"] in ("attack", "no-decision"), by["print"]  # planar, or no turn seen
    assert by["print"]["decision"] != "bona-fide"
    assert by["still"]["decision"] == "no-decision"
    assert (by["bad"]["decision"], by["bad"]["reason"]) == ("no-decision", "unreadable-clip")
    assert "points" not in json.dumps(lines)  # no landmark ever leaves


def test_plain_output_and_a_bad_fps(clips: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from kycedge.unit.cli import main

    assert main(["liveness", str(clips["still"])]) == 0
    assert capsys.readouterr().out.strip().endswith("no-decision (no-motion, score 0.0)")
    assert main(["liveness", "--fps", "0", str(clips["still"])]) == 2
    assert "--fps" in capsys.readouterr().err



def test_a_screen_coloured_head_is_refused_whatever_its_parallax(
        clips: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    head, cool = _run([str(clips["head"]), str(clips["cool"])], capsys)
    assert head["decision"] == "bona-fide", head
    assert head["measures"]["screen"]["blue_shift"] < -0.131  # type: ignore[index]
    assert cool["decision"] == "attack", cool
    assert cool["reason"] == "screen-blue_shift"
    assert float(cool["score"]) > 0  # type: ignore[arg-type]
    (off,) = _run(["--screen-cues", "none", str(clips["cool"])], capsys)
    assert off["decision"] == "bona-fide", off       # the geometry alone cannot refuse it
    assert off["reason"] == "parallax-3d"


def test_a_bad_screen_cue_list_is_a_usage_error(clips: dict[str, Path],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from kycedge.unit.cli import main

    assert main(["liveness", "--screen-cues", "glow", str(clips["still"])]) == 2
    err = capsys.readouterr().err
    assert "--screen-cues" in err
    assert "glow" in err


def test_a_second_face_in_the_clip_refuses_it_whatever_its_parallax(
        clips: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    head, two = _run([str(clips["head"]), str(clips["two"])], capsys)
    assert head["measures"]["screen"]["faces"] == 1.0  # type: ignore[index]
    assert two["decision"] == "attack", two
    assert two["reason"] == "multiple-faces"
    assert float(two["score"]) >= 3  # type: ignore[arg-type]  # sampled frames with two faces
    (off,) = _run(["--screen-cues", "blue_shift", str(clips["two"])], capsys)
    assert off["decision"] == "bona-fide", off       # without the rule: the head's parallax decides


def test_a_head_inside_a_screens_window_is_refused(
        clips: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    head, framed = _run([str(clips["head"]), str(clips["framed"])], capsys)
    assert head["measures"]["screen"]["window"] < 0.2225  # type: ignore[index]
    assert framed["decision"] == "attack", framed
    assert framed["reason"] == "screen-window"
