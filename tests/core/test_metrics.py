"""Exposition: text format, textfile, /metrics and /health over HTTP."""

from __future__ import annotations

import json
import stat
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from kycedge.core.metrics import Health, Metric, MetricsServer, render, write_textfile
from kycedge.unit.metrics import LIVENESS, OutcomeCounter, UnitSnapshot, unit_metrics
from prometheus_client.parser import text_string_to_metric_families

METRICS = [
    Metric("kycedge_x_total", "counter", "things", [({"outcome": "ok"}, 3), ({"outcome": "bad"}, 1)],
           labels=("outcome",)),
    Metric("kycedge_depth", "gauge", "depth", [({}, 7)]),
    Metric("kycedge_model", "info", "model", [({"model_id": "sface", "model_version": "2021dec"}, 1)]),
]


def _values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def test_render_round_trips_through_the_prometheus_parser() -> None:
    v = _values(render(METRICS).decode())
    assert v[("kycedge_x_total", (("outcome", "ok"),))] == 3
    assert v[("kycedge_depth", ())] == 7
    assert v[("kycedge_model_info", (("model_id", "sface"), ("model_version", "2021dec")))] == 1
    assert render(METRICS, openmetrics=True).decode().rstrip().endswith("# EOF")


def test_textfile_is_whole_and_world_readable(tmp_path: Path) -> None:
    p = tmp_path / "k.prom"
    write_textfile(p, METRICS)
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    assert _values(p.read_text())[("kycedge_depth", ())] == 7
    assert [q.name for q in tmp_path.iterdir()] == ["k.prom"]  # no temp file left


def test_server_metrics_health_and_404() -> None:
    state = {"ok": True}
    srv = MetricsServer("127.0.0.1", 0, lambda: METRICS,
                        lambda: Health(state["ok"], {"connected": state["ok"]})).start()
    base = f"http://127.0.0.1:{srv.port}"
    try:
        with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
            assert r.headers["Content-Type"].startswith("text/plain")
            assert _values(r.read().decode())[("kycedge_depth", ())] == 7
        req = urllib.request.Request(base + "/metrics", headers={"Accept": "application/openmetrics-text"})
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.headers["Content-Type"].startswith("application/openmetrics-text")
        with urllib.request.urlopen(base + "/health", timeout=5) as r:
            assert json.loads(r.read()) == {"status": "ok", "connected": True}
        state["ok"] = False
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(base + "/health", timeout=5)
        assert e.value.code == 503
        assert json.loads(e.value.read())["status"] == "unhealthy"
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(base + "/other", timeout=5)
        assert e.value.code == 404
    finally:
        srv.stop()


def test_unit_snapshot_to_metrics() -> None:
    c = OutcomeCounter()
    c.inc("live")
    c.inc("live")
    c.inc("spoof")
    s = UnitSnapshot(now=1000.0, session_counts={"queued": 4, "failed-no-face": 2, "receipt-accepted": 4},
                     queue_count=2, queue_bytes=4096, oldest_enqueued_at=940.0, connected=True,
                     forwarder={"published": 4, "accepted": 3, "rejected": 1, "reconnects": 2},
                     update_state="idle", update_outcome="up-to-date", bundle_version=2,
                     model_id="sface-2021dec-int8", model_version="1", liveness=c.snapshot())
    v = _values(render(unit_metrics(s)).decode())
    assert v[("kycedge_unit_sessions_total", (("outcome", "failed"), ("reason", "no-face")))] == 2
    assert v[("kycedge_unit_sessions_total", (("outcome", "queued"), ("reason", "")))] == 4
    assert not any(k[0] == "kycedge_unit_sessions_total" and ("outcome", "receipt") in k[1] for k in v)
    assert v[("kycedge_unit_outbox_oldest_age_seconds", ())] == 60.0
    assert v[("kycedge_unit_link_up", ())] == 1
    assert v[("kycedge_unit_receipts_total", (("outcome", "rejected"),))] == 1
    assert v[("kycedge_unit_update_state", (("state", "idle"),))] == 1
    assert v[("kycedge_unit_liveness_outcomes_total", (("outcome", "live"),))] == 2
    assert v[("kycedge_unit_model_info", (("bundle_version", "2"), ("model_id", "sface-2021dec-int8"),
                                          ("model_version", "1")))] == 1
    empty = _values(render(unit_metrics(UnitSnapshot(now=5.0))).decode())
    assert empty[("kycedge_unit_outbox_oldest_age_seconds", ())] == 0
    assert isinstance(LIVENESS, OutcomeCounter)


def test_grafana_dashboard_queries_only_metrics_we_export() -> None:
    import re

    root = Path(__file__).resolve().parents[2]
    dash = json.loads((root / "deploy" / "grafana" / "kycedge-dashboard.json").read_text())
    from kycedge.carrier.metrics import receiver_metrics

    exported = {m.name for m in unit_metrics(UnitSnapshot(now=0.0, update_state="idle", update_outcome="none",
                                                          model_id="m"))}
    exported |= {m.name for m in receiver_metrics({}, {}, queue_depth=0, connected=True)}
    exported |= {n + "_info" for n in list(exported)}
    names = {n for p in dash["panels"] for t in p["targets"]
             for n in re.findall(r"kycedge_[a-z_]+", t["expr"])}
    assert names
    assert names <= exported, names - exported
