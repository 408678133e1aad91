"""The liveness demo: three people at the counter, the unit's real session, a real receiver.

In-process, on this machine, with the shipped models: the unit's ``SessionManager`` with
the liveness gate (prompts from the OS CSPRNG), its ``DeviceSealer`` (signed, encrypted
envelopes), and the carrier's ``Receiver`` under the default ``liveness = "required"``
policy with the ID photo (``obama.jpg``) as the registration's reference. The "camera" is
simulated (kycedge.lab.liveness_sim), because no recording can answer fresh prompts:

1. the genuine customer: a synthetic head built from another photo of the ID owner
   (``obama2.jpg``), who follows each prompt -> passes, sealed, ``match``;
2. an impostor holding a printed photo of the ID owner (``obama3.jpg``) up to the camera
   and turning/moving it on each prompt -> ``failed/liveness-failed``, nothing sealed;
3. a replay of the genuine customer's session (its frames) against a fresh challenge ->
   refused, nothing sealed;
4. a unit without the challenge (method "none") sending the genuine capture -> the
   carrier answers ``rejected/liveness-not-passed`` and makes no match.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from kycedge.carrier.config import CarrierConfig
from kycedge.carrier.keyring import init_keys
from kycedge.carrier.receiver import Receiver
from kycedge.lab.liveness_sim.build import attacker, portrait_mesh, subject
from kycedge.lab.liveness_sim.performer import PerformerSource, RecordedSource
from kycedge.protocol.envelope import CarrierKey
from kycedge.protocol.ids import new_registration_reference
from kycedge.unit.capture.base import FrameSource
from kycedge.unit.identity import init_identity
from kycedge.unit.liveness import LivenessConfig, LivenessGate, pipeline_analyze
from kycedge.unit.sealer import DeviceSealer
from kycedge.unit.session import Capture, SealedCapture, SessionConfig, SessionManager
from kycedge.vision.decode import decode_image
from kycedge.vision.liveness.observe import load_observer
from kycedge.vision.pipeline import Pipeline

__all__ = ["LivenessDemo", "liveness_demo"]

TENANT, DEVICE = "demo", "unit-0001"


@dataclass
class LivenessDemo:
    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)
    sealed: int = 0

    @property
    def ok(self) -> bool:
        o = self.outcomes
        return (o.get("genuine", {}).get("receipt") == "match"
                and o.get("print", {}).get("result") == "liveness-failed"
                and o.get("replay", {}).get("result") == "liveness-failed"
                and o.get("no-challenge", {}).get("receipt") == "liveness-not-passed"
                and self.sealed == 1)


class _Ears:
    """Lets the performer in front of the camera hear each prompt the session emits."""

    def __init__(self) -> None:
        self.hear: Callable[[str, float], None] | None = None
        self.now: Callable[[], float] = lambda: 0.0


def _hearing_gate(gate: LivenessGate, ears: _Ears) -> LivenessGate:
    run = gate.run

    def run_and_tell(source: FrameSource, analyze: Any, emit: Any, cancelled: Any, nonce: Any = None) -> Any:
        def emit_and_tell(ev: dict[str, Any]) -> None:
            if ev["event"] == "guidance" and "prompt" in ev and ears.hear is not None:
                ears.hear(ev["reason"], ears.now())
            emit(ev)
        return run(source, analyze, emit_and_tell, cancelled, nonce)

    gate.run = run_and_tell  # type: ignore[method-assign]
    return gate


class _Camera:
    """The one camera of the unit; the demo puts a different scene in front of it."""

    def __init__(self) -> None:
        self.scene: FrameSource | None = None

    @property
    def name(self) -> str:
        return "demo-camera"

    def open(self) -> None:
        assert self.scene is not None
        self.scene.open()

    def read(self, timeout_s: float = 2.0) -> Any:
        assert self.scene is not None
        return self.scene.read(timeout_s)

    def close(self) -> None:
        if self.scene is not None:
            self.scene.close()


def liveness_demo(pipe: Pipeline, faces_dir: Path, out: TextIO = sys.stdout, *,
                  seed: int = 7) -> LivenessDemo:
    w = out.write
    demo = LivenessDemo()
    observer = load_observer(pipe.manifest)
    names = ("obama.jpg", "obama2.jpg", "obama3.jpg")
    photos = {n: decode_image((faces_dir / n).read_bytes()) for n in names}
    id_template = pipe.process_frame(photos["obama.jpg"]).template
    if id_template is None:
        raise RuntimeError("the ID photo gives no template")
    with tempfile.TemporaryDirectory(prefix="kycedge-liveness-demo-") as tmp:
        root = Path(tmp)
        cfg = CarrierConfig(state_dir=root / "carrier")  # liveness = "required" (the default)
        init_keys(cfg)
        rx = Receiver.from_config(cfg)
        identity, _ = init_identity(root / "unit")
        rx.registry.enroll(TENANT, DEVICE, identity.public_key)
        kid = rx.keys.newest_hpke_key_id
        carrier_key = CarrierKey.from_public_key(rx.keys.hpke[kid].public_key())
        sealer = DeviceSealer(identity, [carrier_key], tenant=TENANT, device_id=DEVICE,
                              state_dir=root / "unit")
        envelopes: dict[str, bytes] = {}

        def counting_sealer(cap: Capture) -> SealedCapture:
            demo.sealed += 1
            return sealer(cap)

        class Queue:
            def put(self, message_id: str, envelope: bytes) -> bool:
                envelopes[message_id] = envelope
                return True

        ears = _Ears()
        camera = _Camera()
        # attempt_timeout_s is wall-clock; the simulated camera renders slower than real time.
        # The demo's prompts are seeded so that the walk-through repeats; a unit draws them
        # from the OS CSPRNG (LivenessGate without rng).
        gate = _hearing_gate(LivenessGate(LivenessConfig(retries=0, attempt_timeout_s=120.0),
                                          threshold=pipe.threshold,
                                          rng=random.Random(seed)), ears)  # noqa: S311 - seeded: a repeatable walk-through
        sessions = SessionManager(camera, pipe, counting_sealer, Queue(),
                                  SessionConfig(timeout_s=60.0, settle_s=0.3, best_of=2),
                                  liveness=gate, liveness_analyze=pipeline_analyze)

        def register(name: str, scene: FrameSource, hear: Callable[[str, float], None] | None,
                     now: Callable[[], float]) -> dict[str, Any]:
            ref = new_registration_reference()
            rx.references.add_template(TENANT, ref, id_template, model_id=pipe.model_id,
                                       model_version=pipe.model_version, threshold=pipe.threshold)
            camera.scene, ears.hear, ears.now = scene, hear, now
            s = sessions.start(ref, nonce=f"demo-nonce-{name}")
            prompts: list[str] = []
            summary: dict[str, Any] = {}
            for ev in s.stream(poll_s=0.05):
                if ev["event"] == "guidance" and "prompt" in ev:
                    prompts.append(ev["reason"])
                    w(f"    prompt {ev['prompt']}/{ev['of']}: {ev['reason']} ({ev['message']})\n")
                elif ev["event"] == "failed":
                    summary = {"result": ev["reason"], "why": ev.get("liveness_reason", ev["message"])}
                    break
                elif ev["event"] == "queued":
                    o = rx.handle(envelopes[ev["message_id"]])
                    summary = {"result": "sealed", "receipt": o.reason, "score": o.score}
                    break
            summary["prompts"] = prompts
            return summary

        w("Liveness at the counter (simulated camera; real session, sealer and receiver):\n")
        pm = portrait_mesh(pipe, observer, photos["obama2.jpg"])
        pp = portrait_mesh(pipe, observer, photos["obama3.jpg"])
        if pm is None or pp is None:
            raise RuntimeError("no face in the demo portraits")
        w("  1. the genuine customer follows the prompts\n")
        person = subject(*pm, np.random.default_rng(seed))
        recorded: list[Any] = []
        src = PerformerSource(person, record=recorded)
        demo.outcomes["genuine"] = g = register("genuine", src, person.on_prompt, src.now_s)
        w(f"     -> {g['result']}, carrier receipt: {g.get('receipt')} (score {g.get('score')})\n")
        w("  2. an impostor holds up a printed photo of the ID owner\n")
        holder = attacker(*pp, "print", np.random.default_rng(seed + 1))
        src2 = PerformerSource(holder)
        demo.outcomes["print"] = p = register("print", src2, holder.on_prompt, src2.now_s)
        w(f"     -> {p['result']} ({p.get('why')}); nothing sealed\n")
        w("  3. a replay of the genuine customer's session, against a fresh challenge\n")
        demo.outcomes["replay"] = r = register("replay", RecordedSource(recorded), None, lambda: 0.0)
        w(f"     -> {r['result']} ({r.get('why')}); nothing sealed\n")
        w("  4. a unit without the challenge sends the genuine capture (method none)\n")
        ref = new_registration_reference()
        rx.references.add_template(TENANT, ref, id_template, model_id=pipe.model_id,
                                   model_version=pipe.model_version, threshold=pipe.threshold)
        genuine = pipe.process_frame(photos["obama2.jpg"])
        assert genuine.template is not None
        old = sealer(Capture(template=genuine.template, registration_ref=ref, model_id=pipe.model_id,
                             model_version=pipe.model_version, captured_at=time.time(),
                             quality={}))
        o = rx.handle(old.envelope)
        demo.outcomes["no-challenge"] = {"receipt": o.reason, "status": o.status}
        w(f"     -> carrier receipt: {o.status}/{o.reason} (no match made)\n")
        w(f"  envelopes sealed by the challenge sessions: {demo.sealed} (only the genuine customer)\n")
        rx.close()
    return demo
