"""Several receiver PROCESSES on one database (an MQTT shared subscription delivers the
same templates to more than one of them): each message takes effect once, and every
process answers with the same first receipt. Both backends."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest
from kycedge.carrier.config import CarrierConfig

from .helpers import make_world


def _consume(config: CarrierConfig, envs: list[bytes], now_s: float, start: mp.synchronize.Barrier,
             out: mp.Queue) -> None:  # type: ignore[type-arg]
    from kycedge.carrier.receiver import Receiver

    with Receiver.from_config(config, clock=lambda: now_s) as rx:
        start.wait(60)
        results = []
        for i in range(0, len(envs), 5):
            results += [(o.receipt, o.duplicate, o.reason) for o in rx.handle_batch(envs[i : i + 5])]
    out.put(results)


@pytest.mark.slow
def test_three_processes_share_one_database(tmp_path: Path, db_target: str) -> None:
    world = make_world(tmp_path, db_target)
    try:
        units = [world.unit(f"unit-{i}") for i in range(4)]
        envs = [u.seal() for _ in range(10) for u in units]
        ctx = mp.get_context("spawn")
        n = 3
        start, out = ctx.Barrier(n), ctx.Queue()
        procs = [ctx.Process(target=_consume, args=(world.config, envs, world.clock(), start, out))
                 for _ in range(n)]
        for p in procs:
            p.start()
        results = [out.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        for i in range(len(envs)):
            assert len({r[i][0] for r in results}) == 1  # the same first receipt everywhere
            assert sum(not r[i][1] for r in results) == 1  # exactly one delivery took effect
            assert {r[i][2] for r in results} == {"no-reference"}
        counts = world.receiver.store.counts()
        assert (counts["receipts"], counts["templates"], counts["sequences"]) == (len(envs),) * 3
    finally:
        world.receiver.close()
