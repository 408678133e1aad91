"""tools/evaluate_fusion.py on a few real lfw-dev identities (the session-fusion proxy runs end to end)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.tools import load_tool


@pytest.mark.shared_data
def test_fusion_proxy_smoke(shared_data: Path, models_dir: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    mod = load_tool("evaluate_fusion.py")
    out = tmp_path / "fusion.json"
    # the tool itself asserts that its fusion equals Pipeline.template of the same candidates
    assert mod.main([str(shared_data / "lfw-dev"), "--limit", "40", "--models", str(models_dir),
                     "--no-progress", "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert "NOT session frames" in summary["proxy"]
    v = summary["variants"]
    assert set(v) == {"best-1", "mean-3", "weighted-3"}
    assert v["best-1"]["sessions"] == v["weighted-3"]["sessions"] > 0
    for row in v.values():
        assert 0.0 <= row["tar_at_manifest_threshold"] <= 1.0
        assert row["impostor_pairs"] > 0
    capsys.readouterr()
