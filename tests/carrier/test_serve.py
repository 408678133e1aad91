"""``kycedge-carrier serve`` as a real process: Mosquitto in, receipts out, split by a group."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from kycedge.lab.broker import Broker, Pki, free_port
from kycedge.mqtt.client import MqttClient
from kycedge.protocol import ids, topics
from support.kyc import Carrier

pytestmark = pytest.mark.broker


def test_serve_cli_two_processes_split_and_answer(broker: Broker, pki: Pki, tmp_path: Path) -> None:
    carrier = Carrier.create(tmp_path / "carrier")
    unit = carrier.enroll(tmp_path / "unit", "acme", "u1", t0_ms=int(time.time() * 1000))
    rx = pki.service()
    conf = tmp_path / "receiver.toml"
    conf.write_text(
        f'[carrier]\nstate_dir = "{carrier.dir}"\n\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nca_file = "{rx.ca}"\n'
        f'cert_file = "{rx.cert}"\nkey_file = "{rx.key}"\nsession_expiry_s = 60\n\n'
        '[serve]\ngroup = "g1"\n'
    )
    port = free_port()
    conf1 = tmp_path / "receiver-1.toml"  # process 1 also serves /metrics and /health
    conf1.write_text(conf.read_text() + f"metrics_port = {port}\n")
    procs = [subprocess.Popen([sys.executable, "-m", "kycedge.carrier.cli", "serve", "--config", str(cf),
                               "--instance", str(i)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i, cf in ((1, conf1), (2, conf))]
    dev = pki.device("acme", "u1")
    c = MqttClient(broker.uplink_config(dev), client_id=ids.device_common_name("acme", "u1"))
    got: list[bytes] = []
    c.subscribe(topics.receipts("acme", "u1"), lambda t, p: got.append(p))
    c.start()
    try:
        assert c.wait_connected(5)
        for p in procs:
            assert p.stdout is not None
            assert "consuming $share/g1/kyc/v1/+/+/templates" in p.stdout.readline()
        time.sleep(0.3)
        n = 40
        for i in range(n):
            c.publish(topics.templates("acme", "u1"), unit.seal(i).data)
        deadline = time.monotonic() + 20
        while len(got) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        receipts = [unit.verify(r) for r in got]
        expected = sorted(str(unit.message_id(i)) for i in range(n))
        assert sorted(str(r.message_id) for r in receipts) == expected
        assert {r.reason for r in receipts} == {"no-reference"}
        metrics, healthy = _scrape(port)
        assert healthy == {"status": "ok", "connected": True, "received": metrics["received"],
                           "receipts": metrics["receipts"]}
    finally:
        c.stop()
        for p in procs:
            p.terminate()
        outs = [p.communicate(timeout=10)[0] for p in procs]
    # both processes took a share of the templates (Mosquitto round-robins a shared group)
    shares = [int(o.split("received=")[1].split()[0]) for o in outs]
    assert sum(shares) == n
    assert min(shares) > 0
    assert metrics["received"] == metrics["no-reference"] == shares[0]
    for p in procs:
        assert p.returncode == 0


def _scrape(port: int) -> tuple[dict[str, float], dict[str, object]]:
    import json
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        fams = {f.name: f for f in text_string_to_metric_families(r.read().decode())}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
        healthy = json.loads(r.read())
    out = {"received": fams["kycedge_receiver_templates_received"].samples[0].value,
           "receipts": fams["kycedge_receiver_receipts_sent"].samples[0].value}
    for s in fams["kycedge_receiver_outcomes"].samples:
        if s.labels == {"status": "accepted", "reason": "no-reference"}:
            out["no-reference"] = s.value
    return out, healthy


def test_serve_refuses_a_bad_config(tmp_path: Path) -> None:
    conf = tmp_path / "receiver.toml"
    conf.write_text('[mqtt]\nhost = "x"\ntls = true\n')
    r = subprocess.run([sys.executable, "-m", "kycedge.carrier.cli", "serve", "--config", str(conf)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "tls = true needs ca_file, cert_file and key_file" in r.stderr
