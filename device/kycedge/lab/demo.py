"""The whole-flow demo: a unit, a broker and a carrier on this machine, nothing to configure.

``kycedge demo`` runs the vision section (``kycedge.lab.cli``) and then :func:`run_flow`:

1. set-up, as an operator would do it (``kycedge.lab.harness.Lab``): a fleet CA and
   certificates, Mosquitto with mutual TLS and ACLs on a free loopback port, the carrier's
   fresh keys, the unit's identity enrolled, the customer's ID photo
   (``fixtures/faces/obama.jpg``) added as the reference of each registration;
2. the unit's daemon started as systemd would (``kycedge run``), READY=1 awaited;
3. registrations through the local API, each with its guidance, result and receipt:
   a genuine match (the camera sees ``obama2.jpg``), an impostor (``biden.jpg`` presenting
   the same ID), a bad capture (an empty scene: no face, the session times out);
4. an outage: the broker is stopped, a registration is captured and queued (no receipt
   can come), the broker is started again and the outbox drains: the receipt arrives;
5. SIGTERM, exit code, clean-up.

It returns 0 when every step produced what the flow promises (queued envelopes get a
signed receipt, the bad capture is refused, the queue drains), 1 otherwise.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any, TextIO

__all__ = ["FlowResult", "run_flow"]

REFS = {
    "genuine": "demo-ref-genuine-0001",
    "impostor": "demo-ref-impostor-0002",
    "outage": "demo-ref-outage-0003",
    "bad": "demo-ref-badcapture-0004",
}


class FlowResult:
    def __init__(self) -> None:
        self.steps: dict[str, dict[str, Any]] = {}
        self.ready_s: float | None = None
        self.stop: tuple[int, float] | None = None
        self.problems: list[str] = []
        self.lab_root: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def _registration(client: Any, ref: str, out: TextIO, *, timeout_s: float | None = None) -> dict[str, Any]:
    """Start a session, print its events as they come; return a summary."""
    started = client.start_session(ref, timeout_s=timeout_s, consent_version=client.consent_version())
    w = out.write
    summary: dict[str, Any] = {"session": started["session"], "guidance": [], "events": []}
    for ev in client.events(started["session"]):
        kind = ev["event"]
        summary["events"].append(kind)
        if kind == "guidance":
            summary["guidance"].append(ev["reason"])
            w(f"     guidance  {ev['reason']:<16} {ev['message']}\n")
        elif kind == "captured":
            w(f"     captured  best of {ev['good_frames']} good frame(s) out of {ev['frames']} seen\n")
        elif kind == "queued":
            summary["message_id"] = ev["message_id"]
            w(f"     queued    sealed envelope {ev['message_id']} in the outbox (model {ev['model']})\n")
        elif kind == "receipt":
            summary["receipt"] = ev
            verdict = ev["reason"]
            score = (f" score {ev['score']:.3f} vs threshold {ev['threshold']:.3f}"
                     if ev.get("score") is not None else "")
            w(f"     receipt   signed by the carrier: {ev['status']} / {verdict}{score}\n")
        elif kind == "receipt-pending":
            summary["pending"] = True
            w("     pending   no receipt yet: the envelope stays in the outbox until the carrier answers\n")
        elif kind == "failed":
            summary["failed"] = ev
            last = f" (last guidance: {ev['last_guidance']})" if "last_guidance" in ev else ""
            w(f"     failed    {ev['reason']}: {ev['message']}{last}\n")
    return summary


def run_flow(out: TextIO = sys.stdout, *, models_dir: Path | None = None, faces_dir: Path | None = None,
             keep: bool = False, tpm_tcti: str = "",
             tpm_ca_certificates: tuple[Path, ...] = (), hold_s: float = 0.0) -> FlowResult:
    """The whole flow (see the module docstring); prints a readable account to ``out``.

    With ``tpm_tcti`` the unit's key is generated in that TPM and enrolled by attestation
    against ``tpm_ca_certificates`` (docs/tpm.md); otherwise it is a software key.
    The agent's web app is served by the daemon for the whole run (its URL is printed);
    ``hold_s`` keeps everything running that much longer after the steps, for a person
    to use the app (Ctrl-C ends the wait early).
    """
    from kycedge.core.paths import data_dir
    from kycedge.lab.harness import Lab, approach
    from kycedge.vision import default_models_dir

    faces = faces_dir or data_dir("faces")
    models = (models_dir or default_models_dir()).resolve()
    res = FlowResult()
    w = out.write
    lab = Lab.create(session_timeout_s=10.0, receipt_wait_s=20.0, selftest_image=faces / "obama.jpg",
                     tpm_tcti=tpm_tcti, tpm_ca_certificates=tpm_ca_certificates)
    res.lab_root = lab.root
    # The carrier side runs in this process: its log lines go to a file, the screen shows the story.
    log_handler = _log_to_file(lab.root / "carrier.log")
    try:
        w("\n== The whole flow: unit -> broker -> carrier -> receipt ==\n\n")
        w("Set-up (what an operator does once; here in a temporary directory):\n")
        facts = lab.provision(models, {REFS["genuine"]: faces / "obama.jpg",
                                       REFS["impostor"]: faces / "obama.jpg",
                                       REFS["outage"]: faces / "obama.jpg"})
        w(f"   fleet CA, broker certificate, receiver certificate; the unit's TLS key made on the unit,\n"
          f"   its certificate issued from its own CSR (CN {lab.tenant}/{lab.device})\n")
        lab.start_broker()
        w(f"   Mosquitto on 127.0.0.1:{lab.port}: mutual TLS required, identity and client id from the "
          "certificate, ACLs\n")
        how = ("attested: its TPM's EK certificate chains to a trusted TPM CA, the AK certified the key"
               if facts["attested"] else "software key: no hardware protection")
        w(f"   carrier keys made; unit {lab.device} enrolled (device key {facts['device_key_id'][:16]}..., "
          f"{facts['algorithm']}, key protection {facts['key_protection']}; {how})\n")
        w(f"   ID photo obama.jpg enrolled as the reference of {len(facts['references'])} registrations "
          f"(model {facts['model']}, threshold {facts['threshold']:.3f})\n")
        lab.start_receiver()
        w("   carrier receiver consuming the templates (shared subscription)\n")
        lab.show_clip("approach", approach(faces / "obama2.jpg"))
        res.ready_s = lab.start_daemon()
        w(f"   unit daemon `kycedge run` started: READY=1 after {res.ready_s:.2f} s "
          "(models loaded and self-tested)\n")
        client = lab.client()
        info = client.info()
        w(f"   local API on {lab.api_socket}: status {info['status']}, "
          f"link {'up' if info['link']['connected'] else 'connecting'}\n")
        w(f"   the agent's web app: {lab.app_url}  (open it in a browser on this machine; "
          f"served while the demo runs){_app_check(lab.app_url)}\n\n")

        w("A. Genuine customer walking up to the counter (obama2.jpg, far then near); "
          "the ID photo is obama.jpg\n")
        s = _registration(client, REFS["genuine"], out)
        res.steps["genuine"] = s
        _expect(res, "genuine", s, receipt=True)

        w("\nB. Impostor: biden.jpg in front of the camera, presenting the same ID (obama.jpg)\n")
        lab.show(faces / "biden.jpg")
        s = _registration(client, REFS["impostor"], out)
        res.steps["impostor"] = s
        _expect(res, "impostor", s, receipt=True)

        w("\nC. Bad capture: nobody in front of the camera (session limited to 3 s)\n")
        lab.show(empty=True)
        s = _registration(client, REFS["bad"], out, timeout_s=3.0)
        res.steps["bad"] = s
        if "failed" not in s or "message_id" in s:
            res.problems.append("bad capture: expected the session to fail without queuing anything")
        else:
            w("     nothing was sealed or queued: no template leaves the unit for a refused capture\n")

        w("\nD. Outage: the broker goes down; a registration is captured anyway\n")
        lab.stop_broker()
        w("   broker stopped\n")
        lab.show(faces / "obama3.jpg")
        started = client.start_session(REFS["outage"], consent_version=client.consent_version())
        sid = started["session"]
        s = {"session": sid, "guidance": [], "events": []}
        for ev in client.events(sid):
            s["events"].append(ev["event"])
            if ev["event"] == "guidance":
                s["guidance"].append(ev["reason"])
                out.write(f"     guidance  {ev['reason']:<16} {ev['message']}\n")
            if ev["event"] == "queued":
                s["message_id"] = ev["message_id"]
                out.write(f"     queued    sealed envelope {ev['message_id']} in the outbox\n")
                break
            if ev["event"] == "failed":
                s["failed"] = ev
                break
        res.steps["outage"] = s
        mid = s.get("message_id")
        if mid is None:
            res.problems.append("outage: expected the registration to be queued while the broker is down")
        else:
            q = client.info()["queue"]
            link = "up" if client.info()["link"]["connected"] else "down"
            w(f"   outbox: {q['count']} envelope(s) waiting; link {link}\n")
            time.sleep(1.0)
            lab.start_broker()
            w("   broker started again; the unit reconnects and the outbox drains:\n")
            deadline = time.monotonic() + 60
            last = None
            while time.monotonic() < deadline:
                q = client.info()["queue"]
                if q["count"] != last:
                    w(f"     outbox: {q['count']} queued\n")
                    last = q["count"]
                if q["count"] == 0:
                    break
                time.sleep(0.2)
            msg = client.message(mid)
            if msg.get("state") == "receipted":
                score = f" score {msg['score']:.3f}" if msg.get("score") is not None else ""
                w(f"     receipt   for {mid}: {msg['status']} / {msg['reason']}{score}\n")
                s["receipt"] = msg
            else:
                res.problems.append(f"outage: expected a receipt after the broker came back, got {msg}")

        if hold_s > 0:
            _hold(lab, hold_s, out)
        w("\nStopping the unit (SIGTERM, as systemd does):\n")
        res.stop = lab.stop_daemon()
        w(f"   exit code {res.stop[0]} after {res.stop[1]:.2f} s; STOPPING=1 sent: "
          f"{any('STOPPING=1' in m for _, m in lab.notify_log)}\n")
        if res.stop[0] != 0:
            res.problems.append(f"daemon: expected exit code 0 on SIGTERM, got {res.stop[0]}")
    except Exception as e:  # tell a newcomer what broke instead of a traceback
        res.problems.append(f"{type(e).__name__}: {e}")
        w(f"\n   stopped early: {type(e).__name__}: {e}\n")
    finally:
        lab.close(remove=not keep)
        logging.getLogger().removeHandler(log_handler)
        log_handler.close()
        if not keep:
            shutil.rmtree(lab.root, ignore_errors=True)
    w("\nSummary:\n")
    for name, s in res.steps.items():
        r = s.get("receipt")
        outcome = (f"{r['status']} / {r['reason']}" if r else
                   f"refused: {s['failed']['reason']}" if "failed" in s else "no receipt")
        w(f"   {name:<9} {outcome}\n")
    if res.problems:
        w("\nProblems:\n" + "".join(f"   - {p}\n" for p in res.problems))
    else:
        w("   every step behaved as promised; all processes stopped, temporary files removed\n")
    return res


def _app_check(url: str) -> str:
    """' (answers 200)' if the app's page is served, else what went wrong, for the printout."""
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - our own loopback URL
            return f" (answers {r.status})"
    except OSError as e:
        return f" (NOT answering: {e})"


def _hold(lab: Any, hold_s: float, out: TextIO) -> None:
    """Keep the unit, broker and carrier up for a person to use the app."""
    from kycedge.core.paths import data_dir

    lab.show(data_dir("faces") / "obama2.jpg")
    out.write(f"\nThe unit keeps running for {hold_s:g} s: open {lab.app_url} and register with one of\n"
              f"   {', '.join(r for k, r in REFS.items() if k != 'bad')} (the camera shows obama2.jpg; "
              "Ctrl-C to stop now)\n")
    out.flush()
    try:
        deadline = time.monotonic() + hold_s
        while time.monotonic() < deadline:
            time.sleep(min(0.5, max(deadline - time.monotonic(), 0.0)))
    except KeyboardInterrupt:
        out.write("   interrupted: stopping\n")


def _log_to_file(path: Path) -> logging.Handler:
    from kycedge.core.logs import JsonFormatter

    path.parent.mkdir(parents=True, exist_ok=True)
    h = logging.FileHandler(path)
    h.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(h)
    root.setLevel(logging.INFO)
    return h


def _expect(res: FlowResult, name: str, s: dict[str, Any], *, receipt: bool) -> None:
    if receipt and "receipt" not in s:
        res.problems.append(f"{name}: expected a signed receipt, got events {s['events']}")
