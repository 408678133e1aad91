"""The runtime's native INFO line stays off stderr; anything else it prints comes through."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from kycedge.vision.runtime import quiet_native_info

ROOT = Path(__file__).resolve().parents[2]


def test_native_info_line_dropped_other_lines_kept(capfd: pytest.CaptureFixture[str]) -> None:
    with quiet_native_info():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"ERROR: something the runtime really says\n")
    err = capfd.readouterr().err
    assert "XNNPACK" not in err
    assert "ERROR: something the runtime really says" in err


def test_embed_prints_no_tflite_info_on_stderr() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kycedge.unit.cli", "embed", str(ROOT / "fixtures/faces/astronaut.png")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode in (0, 1), proc.stderr
    assert proc.stdout.strip()
    assert "TensorFlow Lite" not in proc.stderr, proc.stderr
