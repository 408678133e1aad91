"""models/manifest.json against the shipped files: schema, hashes, sizes, and LiteRT I/O specs.

Light by design (no conversion toolchain needed): the faithfulness figures come from
tools/convert_models.py; here we check that what the manifest promises is what ships.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.tools import load_tool

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
MANIFEST = MODELS / "manifest.json"
ROLES = {"detect", "landmarks", "embed"}
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _manifest() -> dict[str, Any]:
    data = json.loads(MANIFEST.read_text())
    assert isinstance(data, dict)
    return data


def _models() -> list[tuple[str, dict[str, Any]]]:
    return sorted(_manifest()["models"].items())


def _interpreter(path: Path) -> Any:
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    it = litert.Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    return it


def test_manifest_top_level_schema() -> None:
    data = _manifest()
    assert data["schema"] == 1
    assert isinstance(data["set_id"], str)
    assert data["set_id"]
    assert isinstance(data["set_version"], str)
    assert data["set_version"]
    assert isinstance(data["models"], dict)
    assert data["models"]
    roles = {m["role"] for m in data["models"].values()}
    assert {"detect", "embed"} <= roles


def test_manifest_is_canonical_json() -> None:
    """Sorted keys, 2-space indent: the form the conversion script writes (stable diffs)."""
    text = MANIFEST.read_text()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


@pytest.mark.parametrize(("key", "entry"), _models())
def test_model_entry_fields(key: str, entry: dict[str, Any]) -> None:
    for field in ("file", "sha256", "size_bytes", "role", "id", "version", "source", "licence",
                  "licence_file", "input", "outputs", "quantisation", "faithfulness", "latency_ms_1thread"):
        assert field in entry, f"{key}: missing {field!r}"
    assert entry["role"] in ROLES, f"{key}: role {entry['role']!r} not in {sorted(ROLES)}"
    assert HEX64.match(entry["sha256"])
    src = entry["source"]
    for field in ("package", "version", "package_sha256", "member", "member_sha256"):
        assert src.get(field), f"{key}: source.{field} missing"
    assert HEX64.match(src["package_sha256"])
    assert HEX64.match(src["member_sha256"])
    assert (MODELS / entry["licence_file"]).is_file(), f"{key}: licence file {entry['licence_file']} missing"
    assert entry["input"]["color"] in {"RGB", "BGR"}
    assert entry["input"]["layout"] == "NHWC"
    assert entry["faithfulness"].get("command")
    assert float(entry["latency_ms_1thread"]) > 0


@pytest.mark.parametrize(("key", "entry"), _models())
def test_file_hash_and_size_match(key: str, entry: dict[str, Any]) -> None:
    path = MODELS / entry["file"]
    assert path.is_file(), f"{key}: {path} missing"
    data = path.read_bytes()
    assert len(data) == entry["size_bytes"], f"{key}: expected {entry['size_bytes']} bytes, got {len(data)}"
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]


def test_every_tflite_is_in_the_manifest() -> None:
    listed = {m["file"] for m in _manifest()["models"].values()}
    shipped = {p.name for p in MODELS.glob("*.tflite")}
    assert shipped == listed


def _check_spec(declared: dict[str, Any], actual: dict[str, Any], what: str) -> None:
    assert declared["name"] == actual["name"], what
    assert list(declared["shape"]) == [int(x) for x in actual["shape"]], what
    assert declared["dtype"] == np.dtype(actual["dtype"]).name, what
    scale, zero_point = actual["quantization"]
    if "quantization" in declared:
        assert declared["quantization"]["scale"] == pytest.approx(scale), what
        assert declared["quantization"]["zero_point"] == zero_point, what
    else:
        assert scale == 0.0, f"{what}: model is quantised but the manifest does not say so"


@pytest.mark.parametrize(("key", "entry"), _models())
def test_model_loads_with_declared_io(key: str, entry: dict[str, Any]) -> None:
    it = _interpreter(MODELS / entry["file"])
    inputs, outputs = it.get_input_details(), it.get_output_details()
    assert len(inputs) == 1
    _check_spec(entry["input"], inputs[0], f"{key} input")
    assert len(outputs) == len(entry["outputs"])
    by_name = {d["name"]: d for d in outputs}
    for declared in entry["outputs"]:
        assert declared["name"] in by_name, f"{key}: output {declared['name']} not in model"
        _check_spec(declared, by_name[declared["name"]], f"{key} output {declared['name']}")
    # one inference on a mid-grey input, outputs finite and of the declared shapes
    d = inputs[0]
    it.set_tensor(d["index"], np.zeros(d["shape"], dtype=d["dtype"]))
    it.invoke()
    for o in outputs:
        out = it.get_tensor(o["index"])
        assert np.isfinite(out.astype(np.float64)).all(), f"{key}: non-finite output {o['name']}"


def test_script_preserves_vision_sections(tmp_path: Path) -> None:
    """The conversion script rewrites `models` only; `matching`/`pipeline` survive (pure file logic)."""
    mod = load_tool("convert/manifest.py")
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"schema": 1, "matching": {"threshold": 0.5}, "pipeline": {"detector": "x"},
                                "models": {"old": {"file": "old.tflite"}}}))
    mod.update(path, {"new": {"file": "new.tflite"}})
    data = json.loads(path.read_text())
    assert data["matching"] == {"threshold": 0.5}
    assert data["pipeline"] == {"detector": "x"}
    assert set(data["models"]) == {"old", "new"}
    assert path.read_text() == json.dumps(data, indent=2, sort_keys=True) + "\n"
    assert not list(tmp_path.glob(".manifest.*"))
