"""`kycedge embed` / `kycedge compare` end to end (in-process, real models)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kycedge.unit.cli import main


@pytest.fixture(scope="module")
def models(repo_root: Path) -> Path:
    from kycedge.vision import default_models_dir

    m = default_models_dir()
    if not (m / "manifest.json").exists():
        pytest.skip(f"no model manifest at {m}")
    return m


def test_embed_json_lines_in_order(models: Path, faces_dir: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "notes.png").write_text("not an image")
    code = main(["embed", "--models", str(models), str(faces_dir / "obama.jpg"), str(bad),
                 str(tmp_path / "missing.jpg"), str(faces_dir / "biden.jpg")])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert code == 1  # some images produced no template
    assert [Path(x["path"]).name for x in lines] == ["obama.jpg", "empty.jpg", "notes.png", "missing.jpg",
                                                     "biden.jpg"]
    assert [x["reason"] for x in lines] == ["ok", "empty-image", "unknown-format", "unreadable-file", "ok"]
    first = lines[0]
    assert first["ok"] is True
    assert first["faces"] == 1
    assert set(first["ms"]) == {"decode", "detect", "align", "refine", "embed", "total"}
    assert "eye_distance_px" in first["quality"]
    assert "embedding" not in first


def test_embed_emit_embedding(models: Path, faces_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["embed", "--models", str(models), "--emit-embedding", "--threads", "2",
                 str(faces_dir / "obama2.jpg")]) == 0
    out = json.loads(capsys.readouterr().out)
    emb = out["embedding"]
    assert len(emb) == 128
    assert abs(sum(v * v for v in emb) - 1.0) < 1e-3


def test_compare(models: Path, faces_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "--models", str(models), str(faces_dir / "obama.jpg"),
                 str(faces_dir / "obama3.jpg")]) == 0
    same = json.loads(capsys.readouterr().out)
    assert same["decision"] == "match"
    assert same["score"] >= same["threshold"]
    assert main(["compare", "--models", str(models), str(faces_dir / "obama.jpg"),
                 str(faces_dir / "biden.jpg")]) == 0
    diff = json.loads(capsys.readouterr().out)
    assert diff["decision"] == "no-match"


def test_bad_models_dir_is_clean_error(tmp_path: Path, faces_dir: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["embed", "--models", str(tmp_path), str(faces_dir / "obama.jpg")]) == 2
    assert "model-missing" in capsys.readouterr().err


def test_embed_gates_off_embeds_a_face_the_gates_refuse(models: Path, faces_dir: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    with Image.open(faces_dir / "obama.jpg") as im:
        # small in a larger frame: the face is found but too small for the move-closer gate
        small = im.convert("RGB").resize((im.width // 4, im.height // 4), Image.Resampling.LANCZOS)
        canvas = Image.new("RGB", (im.width // 2, im.height // 2), (90, 90, 90))
        canvas.paste(small, (10, 10))
    path = tmp_path / "far.jpg"
    canvas.save(path, quality=92)
    assert main(["embed", "--models", str(models), str(path)]) == 1
    on = json.loads(capsys.readouterr().out)
    assert on["reason"] == "move-closer"
    assert main(["embed", "--models", str(models), "--gates", "off", "--emit-embedding", str(path)]) == 0
    off = json.loads(capsys.readouterr().out)
    assert off["ok"] is True
    assert off["quality"]["eye_distance_px"] < 30
    assert len(off["embedding"]) == 128
