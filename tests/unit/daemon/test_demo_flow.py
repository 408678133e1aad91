"""The whole-flow demo end to end (real daemon process, real Mosquitto with mTLS, real
carrier), and: no biometric data in any log line of that run."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from kycedge.lab.broker import MOSQUITTO
from kycedge.vision import default_models_dir

pytestmark = [pytest.mark.slow, pytest.mark.broker]

MODELS = default_models_dir()


@pytest.fixture(scope="module")
def flow(faces_dir: Path) -> object:
    if not (MODELS / "manifest.json").exists():
        pytest.skip(f"no shipped models at {MODELS} (set KYCEDGE_MODELS)")
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed")
    from kycedge.lab.demo import run_flow

    out = io.StringIO()
    fetched: list[tuple[str, int, bytes]] = []
    done = threading.Event()

    def visitor() -> None:  # a person opening the printed URL while the demo runs
        while not done.is_set():
            m = re.search(r"the agent's web app: (http://127\.0\.0\.1:\d+/app/)", out.getvalue())
            phase = "hold" if "keeps running for" in out.getvalue() else "flow"
            if m and (not fetched or (phase == "hold" and fetched[-1][0] == "flow")):
                try:
                    with urllib.request.urlopen(m.group(1), timeout=5) as r:
                        fetched.append((phase, r.status, r.read()))
                except OSError as e:
                    fetched.append((phase, -1, str(e).encode()))
            time.sleep(0.2)

    t = threading.Thread(target=visitor, daemon=True)
    t.start()
    res = run_flow(out, models_dir=MODELS, faces_dir=faces_dir, keep=True, hold_s=2.0)
    done.set()
    t.join(5)
    res.app_visits = fetched
    yield res, out.getvalue()
    assert res.lab_root is not None
    shutil.rmtree(res.lab_root, ignore_errors=True)


def test_demo_runs_every_step(flow: object) -> None:
    res, text = flow  # type: ignore[misc]
    assert res.ok, res.problems
    assert res.steps["genuine"]["receipt"]["reason"] == "match"
    assert res.steps["genuine"]["guidance"][:3] == ["no-face", "move-closer", "ok"]
    assert res.steps["impostor"]["receipt"]["reason"] == "no-match"
    assert res.steps["bad"]["failed"]["reason"] == "timeout"
    assert res.steps["bad"]["failed"]["last_guidance"] == "no-face"
    assert "no-face" in res.steps["bad"]["guidance"]
    assert res.steps["outage"]["receipt"]["state"] == "receipted"
    assert res.stop[0] == 0
    assert "outbox: 0 queued" in text
    assert "READY=1 after" in text


def test_demo_prints_the_app_url_and_serves_it_while_it_runs(flow: object) -> None:
    res, text = flow  # type: ignore[misc]
    assert re.search(r"the agent's web app: http://127\.0\.0\.1:\d+/app/ .*\(answers 200\)", text)
    phases = [(phase, status) for phase, status, _ in res.app_visits]
    assert phases == [("flow", 200), ("hold", 200)], phases
    assert all(b'<script src="app.js"' in body for _, _, body in res.app_visits)


def _needles(faces_dir: Path) -> dict[str, list[bytes]]:
    """Every form a template or image could take in a log line."""
    from kycedge.vision.decode import decode_image
    from kycedge.vision.pipeline import Pipeline

    pipe = Pipeline.load(MODELS)
    out: dict[str, list[bytes]] = {}
    for name in ("obama.jpg", "obama2.jpg", "biden.jpg", "obama3.jpg"):
        data = (faces_dir / name).read_bytes()
        t = pipe.process_image_bytes(data).template
        assert t is not None
        raw = np.asarray(t, "<f4").tobytes()
        forms = [raw[:16], raw[16:32], raw.hex()[:32].encode(), raw[16:32].hex().encode(),
                 base64.b64encode(raw[:24]), base64.urlsafe_b64encode(raw[:24]),
                 base64.b64encode(raw[24:48])]
        values = [float(v) for v in t if abs(float(v)) > 1e-3][:8]
        forms += [repr(v).encode() for v in values if len(repr(v)) >= 8]  # JSON / repr of the floats
        forms += [f"{v:.6f}".encode() for v in values]
        rgb = decode_image(data)
        forms += [data[100:132], base64.b64encode(data[99:147]), data[100:132].hex().encode(),
                  rgb.tobytes()[3000:3032], rgb.tobytes()[3000:3032].hex().encode(),
                  base64.b64encode(rgb.tobytes()[3000:3048])]
        out[name] = forms
    return out


def test_no_biometric_data_in_any_log_line(flow: object, faces_dir: Path) -> None:
    res, _ = flow  # type: ignore[misc]
    root: Path = res.lab_root
    logs = [root / "unit" / "daemon.log", root / "carrier.log", root / "broker" / "mosquitto.log"]
    blobs = {p.name: p.read_bytes() for p in logs if p.exists()}
    assert blobs["daemon.log"].count(b"\n") > 10  # the daemon did log the run
    daemon_lines = blobs["daemon.log"].decode("utf-8", "replace").splitlines()
    json_lines = [json.loads(line) for line in daemon_lines if line.startswith("{")]
    assert any(e["msg"] == "template queued" for e in json_lines)
    assert any(e["msg"] == "ready" for e in json_lines)
    for name, forms in _needles(faces_dir).items():
        for form in forms:
            for log_name, blob in blobs.items():
                assert form not in blob, f"{log_name} contains data of {name}: {form[:24]!r}"
    long_run = re.compile(rb"[A-Za-z0-9+/=_\-]{100,}")
    for log_name, blob in blobs.items():
        m = long_run.search(blob)
        assert m is None, f"{log_name}: a long encoded run: {m.group()[:40]!r}"
