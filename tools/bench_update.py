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
- serving gap: one serving thread runs sessions (``process_image_bytes`` on the analyzer
  currently installed) back to back during the whole update, like the daemon's session
  manager: it takes the analyzer reference under a lock and the reload swaps that
  reference under the same lock after loading the new pipeline. Printed: the longest
  wait of any session to start (the time the unit could not begin serving), the longest
  gap between two completed sessions, and the median session time for comparison.
  Floor: the time the daemon cannot serve a session during the switch <= 1 s.
- switch_ms: ``ModelStore.activate`` alone (journal, two symlink swaps, dir fsync).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT / "fixtures" / "faces"


def run_once(models: Path, tmp: Path) -> dict[str, Any]:
    from kycedge.fleet.bundle_build import build_bundle, set_rollout, sign_bundle
    from kycedge.fleet.repository import FleetRepository, RoleSpec
    from kycedge.fleet.static_server import serve_in_thread
    from kycedge.updates.agent import UpdateAgent
    from kycedge.updates.config import UpdatesConfig
    from kycedge.updates.rollout import Rollout
    from kycedge.updates.switch import ModelStore
    from kycedge.vision import Pipeline

    golden = [FACES / "obama.jpg", FACES / "obama2.jpg", FACES / "biden.jpg"]
    repo = FleetRepository(tmp / "repo", tmp / "keys")
    root = repo.init({"root": RoleSpec(2, 2)})
    bundle = build_bundle(models, tmp / "bundle", version=1, golden=golden)
    sign_bundle(repo, tmp / "bundle")
    set_rollout(repo, Rollout(1, None))
    repo.publish(tmp / "www")
    server = serve_in_thread(tmp / "www")
    url = f"http://127.0.0.1:{server.server_address[1]}"

    cfg = UpdatesConfig(repository_url=url, trusted_root=root, state_dir=tmp / "unit",
                        health_interval_s=0.0, retry_backoff_s=0.0)
    store = ModelStore(cfg.state_dir)
    store.seed(models)                                  # factory set: nothing to reuse
    lock = threading.Lock()
    state: dict[str, Any] = {"pipe": Pipeline.load(store.current() or models)}
    probe = (FACES / "obama3.jpg").read_bytes()

    def reload_models(path: Path) -> None:
        new = Pipeline.load(path)                       # old pipeline keeps serving meanwhile
        with lock:
            state["pipe"] = new

    def health() -> bool:
        # Like the daemon's health check: sessions complete on the installed models (the
        # pipeline is not shared between threads: inference stays on the serving thread).
        with lock:
            pipe = state["pipe"]
        end = time.monotonic() + 10.0
        while time.monotonic() < end:
            if state.get("last_ok_pipe") is pipe:
                return True
            time.sleep(0.01)
        return False

    stop = threading.Event()
    waits: list[float] = []
    done: list[float] = []
    durations: list[float] = []
    failures: list[str] = []

    def serve() -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            with lock:
                pipe = state["pipe"]
            t1 = time.perf_counter()
            res = pipe.process_image_bytes(probe)
            t2 = time.perf_counter()
            waits.append(t1 - t0)
            durations.append(t2 - t1)
            done.append(t2)
            if res.ok:
                state["last_ok_pipe"] = pipe
            else:
                failures.append(res.reason)

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
    time.sleep(0.5)
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
    in_window = [d for d in done if t0 <= d <= t0 + update_s + 0.3]
    gaps = [b - a for a, b in itertools.pairwise(in_window)]
    return {
        "update_s": update_s, "bytes": bundle.total_bytes, "files": len(bundle.files),
        "switch_ms": switch_times[0] * 1000 if switch_times else float("nan"),
        "max_wait_ms": max(waits) * 1000, "max_gap_ms": max(gaps) * 1000 if gaps else float("nan"),
        "median_session_ms": statistics.median(durations) * 1000, "sessions": len(in_window),
        "failures": failures, "model": f"{bundle.matching.model_id}@{bundle.matching.model_version}",
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
              f"{r['model']}); switch {r['switch_ms']:.2f} ms; sessions during update {r['sessions']}, "
              f"failed {len(r['failures'])}; longest wait to start a session {r['max_wait_ms']:.2f} ms; "
              f"longest gap between sessions {r['max_gap_ms']:.0f} ms (median session "
              f"{r['median_session_ms']:.0f} ms)")
    upd = [r["update_s"] for r in results]
    wait = [r["max_wait_ms"] for r in results]
    print(f"full update over loopback incl. self-test: median {statistics.median(upd):.2f} s, "
          f"max {max(upd):.2f} s (floor <= 30 s)")
    print(f"time the unit could not start a session during the switch: max {max(wait):.2f} ms "
          f"(floor <= 1000 ms); atomic switch alone: max {max(r['switch_ms'] for r in results):.2f} ms; "
          f"longest gap between two completed sessions during the update: "
          f"max {max(r['max_gap_ms'] for r in results):.0f} ms (sessions failed: "
          f"{sum(len(r['failures']) for r in results)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
