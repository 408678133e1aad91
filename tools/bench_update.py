#!/usr/bin/env python3
"""Time a full model update on a unit over loopback, and the serving gap of the switch.

    .venv/bin/python tools/bench_update.py [--models models/] [--runs 3]

Set-up (each run, fresh temp dirs): a fleet TUF repository (root 2-of-2, Ed25519) with a
bundle built from ``--models`` (the shipped set) plus three fixture faces with their
expected embeddings; published and served by the project's Range-capable static server
on 127.0.0.1. The unit starts on the factory copy of the models (no bundle.json), so it
downloads EVERY file of the bundle.

Measured per run:
- update_s: ``UpdateAgent.check_now()`` wall time: TUF refresh (root, timestamp,
  snapshot, targets), rollout, bundle.json, download + hash of every file, self-test
  (Pipeline.load + three golden embeddings + pair check), atomic switch, the daemon's
  reload (a second Pipeline.load while the old one keeps serving), 3 health checks,
  commit. Floor: <= 30 s.
- serving: the daemon's own ``SessionManager`` (kycedge.unit.session) runs
  registration sessions back to back on a replayed camera (fixture obama3.jpg) with the
  real pipeline during the whole update; the reload hook does what the daemon's does
  (load the new pipeline fully while sessions run, then ``reload_analyzer``). Printed:
  sessions overlapping the update and how many failed, the longest session during the
  update against the median before it, and the longest gap between two queued
  templates (a gap always contains one whole session). Floor: the time the daemon
  cannot serve a session during the switch <= 1 s.
- switch_ms: ``ModelStore.activate`` alone (journal, two symlink swaps, dir fsync).
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT / "fixtures" / "faces"


def run_once(models: Path, tmp: Path) -> dict[str, Any]:
    from kycedge.core.errors import SessionError
    from kycedge.fleet.bundle_build import build_bundle, set_rollout, sign_bundle
    from kycedge.fleet.repository import FleetRepository, RoleSpec
    from kycedge.fleet.static_server import serve_in_thread
    from kycedge.protocol.rollout import Rollout
    from kycedge.unit.capture.replay import ReplaySource
    from kycedge.unit.session import Capture, Sealed, SessionConfig, SessionManager
    from kycedge.unit.updates.agent import UpdateAgent
    from kycedge.unit.updates.config import UpdatesConfig
    from kycedge.unit.updates.switch import ModelStore
    from kycedge.vision import Pipeline

    golden = [FACES / "obama.jpg", FACES / "obama2.jpg", FACES / "biden.jpg"]
    repo = FleetRepository(tmp / "repo", tmp / "keys")
    root = repo.init({"root": RoleSpec(2, 2)})
    # The next model set: the shipped files under a new model version, so sealed
    # templates show which set served them.
    nxt = tmp / "models-next"
    shutil.copytree(models, nxt)
    man = json.loads((nxt / "manifest.json").read_text())
    emb = man["models"][man["pipeline"]["embedder"]]
    man["pipeline"]["model_version"] = f"{emb.get('version', 'v')}+next"[:32]
    (nxt / "manifest.json").write_text(json.dumps(man, indent=1))
    bundle = build_bundle(nxt, tmp / "bundle", version=1, golden=golden)
    sign_bundle(repo, tmp / "bundle")
    set_rollout(repo, Rollout(1, None))
    repo.publish(tmp / "www")
    server = serve_in_thread(tmp / "www")
    url = f"http://127.0.0.1:{server.server_address[1]}"

    cfg = UpdatesConfig(repository_url=url, trusted_root=root, state_dir=tmp / "unit",
                        health_interval_s=0.0, retry_backoff_s=0.0)
    store = ModelStore(cfg.state_dir)
    store.seed(models)                                  # factory set: nothing to reuse

    # The daemon's own session manager, on a replayed camera, with a real pipeline.
    frames = tmp / "camera"
    frames.mkdir()
    (frames / "obama3.jpg").symlink_to(FACES / "obama3.jpg")
    models_used: list[str] = []

    def sealer(cap: Capture) -> Sealed:
        models_used.append(cap.model_version)
        return Sealed(message_id=uuid.uuid4().hex, envelope=b"bench")

    class Queue:
        def put(self, message_id: str, envelope: bytes) -> bool:
            return True

    sessions = SessionManager(ReplaySource(frames), Pipeline.load(store.current() or models), sealer,
                              Queue(), SessionConfig(best_of=1, settle_s=0.0, receipt_wait_s=0.0))

    def reload_models(path: Path) -> None:
        # What the daemon's reload does: load fully while sessions run, then swap.
        sessions.reload_analyzer(Pipeline.load(path))

    def health() -> bool:
        return sessions.healthy()[0]

    stop = threading.Event()
    latencies: list[tuple[float, float]] = []           # (start, queued) wall times
    failures: list[str] = []

    def serve() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            t0 = time.perf_counter()
            try:
                s = sessions.start(f"bench-{n}", timeout_s=30)
            except SessionError:
                time.sleep(0.001)                       # the previous session is finishing
                continue
            for ev in s.stream(poll_s=0.05):
                if ev["event"] == "queued":
                    latencies.append((t0, time.perf_counter()))
                elif ev["event"] == "failed":
                    failures.append(str(ev.get("reason")))

    switch_times: list[float] = []
    real_activate = store.activate

    agent = UpdateAgent(cfg, device_id="bench-unit", reload_models=reload_models, health_check=health)

    def timed_activate(new_set: Path, **kw: Any) -> None:
        t = time.perf_counter()
        real_activate(new_set, **kw)
        switch_times.append(time.perf_counter() - t)

    agent.store.activate = timed_activate  # type: ignore[method-assign]
    th = threading.Thread(target=serve, daemon=True)
    th.start()
    time.sleep(2.0)                                     # a few sessions before the update
    t0 = time.perf_counter()
    st = agent.check_now()
    update_s = time.perf_counter() - t0
    time.sleep(0.3)
    stop.set()
    th.join()
    server.shutdown()
    server.server_close()
    if st.outcome != "updated":
        raise SystemExit(f"update did not complete: {st}")
    during = [(a, b) for a, b in latencies if b >= t0 and a <= t0 + update_s]
    before = [b - a for a, b in latencies if b < t0]
    done = [b for _a, b in latencies if t0 <= b <= t0 + update_s + 0.3]
    gaps = [b - a for a, b in itertools.pairwise(done)]
    return {
        "update_s": update_s, "bytes": bundle.total_bytes, "files": len(bundle.files),
        "switch_ms": switch_times[0] * 1000 if switch_times else float("nan"),
        "max_session_ms": max(b - a for a, b in during) * 1000 if during else float("nan"),
        "median_before_ms": statistics.median(before) * 1000 if before else float("nan"),
        "max_gap_ms": max(gaps) * 1000 if gaps else float("nan"), "sessions": len(during),
        "failures": failures, "model": f"{bundle.matching.model_id}@{bundle.matching.model_version}",
        "versions": sorted(set(models_used)),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", type=Path, default=ROOT / "models")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if not (args.models / "manifest.json").exists():
        print(f"no models at {args.models} (manifest.json missing)", file=sys.stderr)
        return 2
    results = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bench-update-") as d:
            r = run_once(args.models, Path(d))
        results.append(r)
        print(f"run {i + 1}: update {r['update_s']:.2f} s ({r['files']} files, {r['bytes'] / 1e6:.1f} MB, "
              f"{r['model']}); switch {r['switch_ms']:.2f} ms; sessions overlapping the update "
              f"{r['sessions']}, failed {len(r['failures'])}; longest session during it "
              f"{r['max_session_ms']:.0f} ms (median before {r['median_before_ms']:.0f} ms); longest gap "
              f"between two queued templates {r['max_gap_ms']:.0f} ms")
    upd = [r["update_s"] for r in results]
    print(f"full update over loopback incl. self-test: median {statistics.median(upd):.2f} s, "
          f"max {max(upd):.2f} s (floor <= 30 s)")
    print(f"sessions during the update (daemon SessionManager, replayed camera): "
          f"{sum(r['sessions'] for r in results)}, failed {sum(len(r['failures']) for r in results)}; "
          f"longest gap between two queued templates: max {max(r['max_gap_ms'] for r in results):.0f} ms "
          f"(includes one whole session); longest session: max "
          f"{max(r['max_session_ms'] for r in results):.0f} ms vs median before "
          f"{statistics.median([r['median_before_ms'] for r in results]):.0f} ms "
          f"(floor: unavailable <= 1000 ms)")
    print(f"atomic switch (journal, 2 symlink swaps, fsync): max "
          f"{max(r['switch_ms'] for r in results):.2f} ms; model versions in sealed templates: "
          f"{sorted({v for r in results for v in r['versions']})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
