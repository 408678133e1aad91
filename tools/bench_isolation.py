#!/usr/bin/env python3
"""One unit attacks another through the real broker; prints what reaches the carrier (issue 11).

    .venv/bin/python tools/bench_isolation.py [--templates 36] [--attackers 8] [--window-s 15]
                                              [--takeover-s 16] [--mode all|guard|no-guard|dynsec]

Everything is real: Mosquitto from ``deploy/mosquitto`` (``kycedge.lab.broker``), the
victim unit's outbox + forwarder + paho session, sealed envelopes, the carrier's receiver
(``ReceiverService``, group ``kyc-receivers``) answering with signed receipts. The attacker
holds a valid certificate of its own (``acme/evil``). Three broker configurations:
``no-guard`` is the one before ADR 0010 (``use_identity_as_username`` + acl_file, no
plugin); ``dynsec`` replaces the acl_file with Mosquitto's dynamic-security plugin (one
client with a bound client id and one role per identity, written by :func:`dynsec_config`);
``guard`` is the shipped one (the kycedge_guard plugin + acl_file).

1. group theft: the attacker opens ``--attackers`` sessions (its own client id and
   ``evil-<k>``) and subscribes each to ``$share/kyc-receivers/kyc/v1/+/+/templates``;
   then the victim queues ``--templates`` registrations. Printed: sessions the broker
   accepted, SUBSCRIBEs granted, PUBLISHes of the victim, templates that reached the real
   receiver, registrations receipted within ``--window-s`` (the demo's receipt wait),
   outbox defaults otherwise (first re-send after 10 s);
2. client-id takeover: for ``--takeover-s`` the attacker reconnects in a loop with the
   victim's client id; the victim's link is sampled every 0.5 s (availability), and it
   keeps sending registrations (one per second; receipted within the window);
3. retained: the attacker publishes a retained message on its own templates topic; a
   receiver that subscribes (not shared) afterwards counts what it is handed.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from kycedge.carrier.serve import ReceiverService, ServeConfig  # noqa: E402
from kycedge.core.errors import UplinkError  # noqa: E402
from kycedge.lab.broker import Broker, Creds, Pki  # noqa: E402
from kycedge.mqtt.client import MqttClient  # noqa: E402
from kycedge.protocol import ids, topics  # noqa: E402
from kycedge.unit.forwarder import Forwarder, ForwarderConfig, offline_will  # noqa: E402
from kycedge.unit.outbox import Outbox, OutboxConfig  # noqa: E402
from support.kyc import Carrier, Unit  # noqa: E402

TENANT = "acme"
SHARED = topics.shared_templates_subscription(ServeConfig().group)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


DYNSEC_PLUGIN = Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")


def dynsec_config(units: list[str]) -> dict[str, Any]:
    """The kycedge ACL as dynamic-security objects: a client per identity (client id bound),
    a role per identity. Units: send own templates + status, subscribe own receipts."""
    def allow(acltype: str, topic: str) -> dict[str, Any]:
        return {"acltype": acltype, "topic": topic, "allow": True}

    clients = [{"username": ids.device_common_name(TENANT, u), "clientid": ids.device_common_name(TENANT, u),
                "roles": [{"rolename": f"unit-{u}"}]} for u in units]
    roles = [{"rolename": f"unit-{u}", "acls": [
        allow("publishClientSend", topics.templates(TENANT, u)),
        allow("publishClientSend", topics.status(TENANT, u)),
        allow("subscribeLiteral", topics.receipts(TENANT, u))]} for u in units]
    clients.append({"username": "carrier-receiver", "roles": [{"rolename": "receiver"}]})
    roles.append({"rolename": "receiver", "acls": [
        allow("subscribePattern", SHARED), allow("subscribePattern", "kyc/v1/+/+/templates"),
        allow("publishClientSend", "kyc/v1/+/+/receipts")]})
    return {"defaultACLAccess": {"publishClientSend": False, "publishClientReceive": True, "subscribe": False,
                                 "unsubscribe": True}, "clients": clients, "groups": [], "roles": roles}


def mqtt_client(broker: Broker, creds: Creds, client_id: str, **kw: Any) -> MqttClient:
    cfg = broker.uplink_config(creds, reconnect_min_s=1, reconnect_max_s=1)
    return MqttClient(cfg, client_id=client_id, **kw)


class World:
    def __init__(self, work: Path, mode: str) -> None:
        self.work = work
        self.pki = Pki.create(work / "pki")
        self.broker = Broker(work / "broker", self.pki, guard=mode == "guard")
        if mode == "dynsec":
            if not DYNSEC_PLUGIN.exists():
                raise SystemExit(f"{DYNSEC_PLUGIN} not found (Debian package mosquitto)")
            conf = work / "dynamic-security.json"
            conf.write_text(json.dumps(dynsec_config(["u1", "u2", "evil"])))
            text = self.broker.conf_path.read_text().replace("\nacl_file ", "\n#acl_file ")
            self.broker.conf_path.write_text(
                f"{text}\nplugin {DYNSEC_PLUGIN}\nplugin_opt_config_file {conf}\n")
        self.broker.start()
        self.carrier = Carrier.create(work / "carrier")
        t = MqttClient(self.broker.uplink_config(self.pki.service(), session_expiry_s=60),
                       client_id="carrier-receiver-1", manual_ack=True)
        self.rx = ReceiverService(self.carrier.receiver(), t, ServeConfig())
        self.rx.start()
        if not t.wait_connected(10):
            raise SystemExit(f"receiver did not connect: {t.last_error}")
        self.t0_ms = int(time.time() * 1000)
        self.evil = self.pki.device(TENANT, "evil")

    def victim(self, name: str) -> tuple[Unit, Outbox, Forwarder]:
        unit = self.carrier.enroll(self.work / "units" / name, TENANT, name, t0_ms=self.t0_ms)
        ob = Outbox(self.work / f"{name}.sqlite", OutboxConfig())
        link = mqtt_client(self.broker, self.pki.device(TENANT, name), ids.device_common_name(TENANT, name),
                           will=offline_will(TENANT, name))
        fw = Forwarder(ob, link, tenant=TENANT, device=name, verify_receipt=unit.verify,
                       config=ForwarderConfig(idle_poll_s=0.05))
        return unit, ob, fw

    def close(self) -> None:
        self.rx.stop()
        self.broker.kill()


def group_theft(w: World, n: int, attackers: int, window_s: float) -> dict[str, Any]:
    sessions: list[MqttClient] = []
    accepted = granted = 0
    for k in range(attackers):
        cid = ids.device_common_name(TENANT, "evil") if k == 0 else f"evil-{k}"
        c = mqtt_client(w.broker, w.evil, cid)
        c.start()
        sessions.append(c)
        if not c.wait_connected(3):
            continue
        accepted += 1
        try:
            c.subscribe(SHARED, lambda t, p: None)
            granted += 1
        except UplinkError:
            pass
    unit, ob, fw = w.victim("u1")
    received0 = w.rx.counters["received"]
    fw.start()
    t0 = time.monotonic()
    for i in range(n):
        ob.put(str(unit.message_id(i)), unit.seal(i).data)
    fw.wake()
    while time.monotonic() - t0 < window_s and ob.stats().count > 0:
        time.sleep(0.05)
    out = {"attacker_sessions_accepted": accepted, "attacker_shared_subscribes_granted": granted,
           "victim_publishes": fw.counters["published"], "templates": n,
           "received_by_receiver": w.rx.counters["received"] - received0,
           "receipted_within_window": n - ob.stats().count, "window_s": window_s}
    fw.stop()
    for c in sessions:
        c.stop()
    return out


def takeover(w: World, duration_s: float, window_s: float) -> dict[str, Any]:
    unit, ob, fw = w.victim("u2")
    fw.start()
    if not fw.transport.wait_connected(10):  # type: ignore[attr-defined]
        raise SystemExit("victim did not connect")
    stop = threading.Event()
    tries = {"accepted": 0, "refused": 0}

    def attack() -> None:
        while not stop.is_set():
            c = mqtt_client(w.broker, w.evil, ids.device_common_name(TENANT, "u2"))
            c.start()
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline and not c.connected and "Not authorized" not in c.last_error:
                time.sleep(0.01)
            tries["accepted" if c.connected else "refused"] += 1
            time.sleep(0.2)
            c.stop()

    threading.Thread(target=attack, daemon=True).start()
    samples = up = 0
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < duration_s:
        if time.monotonic() - t0 >= i:  # one registration per second
            ob.put(str(unit.message_id(i)), unit.seal(i).data)
            fw.wake()
            i += 1
        samples += 1
        up += bool(fw.transport.connected)  # type: ignore[attr-defined]
        time.sleep(0.5)
    stop.set()
    t_end = time.monotonic()
    while time.monotonic() - t_end < window_s and ob.stats().count > 0:
        time.sleep(0.05)
    out = {"duration_s": duration_s, "victim_link_up_samples": up, "samples": samples,
           "availability": round(up / samples, 3), "takeover_connects_accepted": tries["accepted"],
           "takeover_connects_refused": tries["refused"], "registrations": i,
           "receipted_within_window_after": i - ob.stats().count, "window_s": window_s}
    fw.stop()
    return out


def retained(w: World) -> dict[str, Any]:
    evil = mqtt_client(w.broker, w.evil, ids.device_common_name(TENANT, "evil"))
    evil.start()
    evil.wait_connected(5)
    try:
        evil.publish(topics.templates(TENANT, "evil"), b"retained template", retain=True)
        accepted = True
    except UplinkError:
        accepted = False
    evil.stop()
    got: list[str] = []
    late = mqtt_client(w.broker, w.pki.service(), "carrier-receiver-late")
    late.subscribe("kyc/v1/+/+/templates", lambda t, p: got.append(t))
    late.start()
    late.wait_connected(5)
    time.sleep(1.0)
    late.stop()
    return {"retained_publish_accepted": accepted, "retained_delivered_to_later_subscriber": len(got)}


def run(mode: str, a: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"kycedge-isolation-{mode}-") as d:
        w = World(Path(d), mode)
        try:
            res = {"mode": mode, "uptime": uptime()}
            res["group_theft"] = group_theft(w, a.templates, a.attackers, a.window_s)
            res["takeover"] = takeover(w, a.takeover_s, a.window_s)
            res["retained"] = retained(w)
            res["uptime_after"] = uptime()
        finally:
            w.close()
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--templates", type=int, default=36)
    ap.add_argument("--attackers", type=int, default=8)
    ap.add_argument("--window-s", type=float, default=15.0)
    ap.add_argument("--takeover-s", type=float, default=16.0)
    ap.add_argument("--mode", choices=["all", "no-guard", "dynsec", "guard"], default="all")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON only")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    modes = ["no-guard", "dynsec", "guard"] if a.mode == "all" else [a.mode]
    results = [run(m, a) for m in modes]
    if a.json:
        print(json.dumps(results, indent=1))
        return 0
    for r in results:
        g, t, x = r["group_theft"], r["takeover"], r["retained"]
        print(f"== {r['mode']}  ({r['uptime']})")
        print(f"  1. group theft: attacker sessions accepted {g['attacker_sessions_accepted']}/"
              f"{a.attackers}, shared SUBSCRIBEs granted {g['attacker_shared_subscribes_granted']}")
        print(f"     victim: {g['templates']} registrations, {g['victim_publishes']} PUBLISHes; real "
              f"receiver got {g['received_by_receiver']}; receipted within {g['window_s']:.0f} s: "
              f"{g['receipted_within_window']}/{g['templates']}")
        print(f"  2. takeover ({t['duration_s']:.0f} s): victim link up in {t['victim_link_up_samples']}/"
              f"{t['samples']} samples ({100 * t['availability']:.0f} %); attacker CONNECTs accepted "
              f"{t['takeover_connects_accepted']}, refused {t['takeover_connects_refused']}; victim's "
              f"registrations receipted {t['receipted_within_window_after']}/{t['registrations']} "
              f"(within {t['window_s']:.0f} s after the attack)")
        print(f"  3. retained template: publish accepted {x['retained_publish_accepted']}; delivered to a "
              f"later subscriber {x['retained_delivered_to_later_subscriber']}")
        print(f"  ({r['uptime_after']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
