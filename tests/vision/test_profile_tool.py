"""tools/profile_template_path.py: every stage of the single-image path is timed, on the fixture faces."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_profile_tool_times_every_stage(models_dir: Path, faces_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "profile.json"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "profile_template_path.py"), str(faces_dir),
                           "--n", "3", "--repeat", "1", "--models", str(models_dir), "--json", str(out)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())
    for stage in ("blazeface: invoke", "gates: measured part of it (shipped)", "facemesh: invoke",
                  "align: warp 112", "sface: invoke, batch 2 (crop + mirror)", "TOTAL process_frame()"):
        assert rows[stage]["n"] == 3
        assert rows[stage]["wall_ms"] > 0
        assert rows[stage]["cpu_ms"] >= 0
    assert "TOTAL process_frame()" in proc.stdout
