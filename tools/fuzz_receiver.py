#!/usr/bin/env python3
"""Fuzz the receiver's full ingest path (parse, registry, crypto, storage) with mutated
valid envelopes and random bytes.

    .venv/bin/python tools/fuzz_receiver.py --iterations 100000 [--seed 1] [--batch 64]

Prints ``iterations=N crashes=C forgeries=F ...``: a crash is any exception out of
``Receiver.handle_batch``; a forgery is an accepted envelope that no unit sealed
(an alteration of a genuine one, byte-for-byte different from every genuine one), or a
receipt that does not verify under the carrier's receipt key or names another message
than the envelope. Both must be 0. The receiver runs on SQLite in a temp dir with
enrolled units and a reference, so valid envelopes take the full accept path too.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
from kycedge import crypto
from kycedge.carrier.config import CarrierConfig
from kycedge.carrier.keyring import init_keys
from kycedge.carrier.receiver import Receiver
from kycedge.protocol.envelope import (
    GENESIS_DIGEST,
    CarrierKey,
    Liveness,
    Payload,
    Template,
    seal,
    verify_receipt,
)

MODEL = ("sface-2021dec-int8", "1.0.0")
REF = "rFuzzReference_0123abcd"


class Corpus:
    def __init__(self, rx: Receiver, rng: random.Random, now_ms: int) -> None:
        self.rx, self.rng, self.now_ms = rx, rng, now_ms
        kid = rx.keys.newest_hpke_key_id
        self.carrier = CarrierKey.from_public_key(rx.keys.hpke[kid].public_key())
        self.units: list[list[object]] = []
        for d in range(4):
            key = crypto.generate_signing_key()
            if d < 3:  # the fourth unit is never enrolled
                rx.registry.enroll("acme", f"fuzz-{d}", crypto.public_key_bytes(key.public_key()))
            self.units.append([f"fuzz-{d}", key, 0, GENESIS_DIGEST])
        rx.registry.revoke("acme", "fuzz-2")
        v = np.random.default_rng(0).standard_normal(128).astype(np.float32)
        self.ref = v / np.linalg.norm(v)
        rx.references.add_template("acme", REF, self.ref, model_id=MODEL[0], model_version=MODEL[1],
                                   threshold=0.363)
        self.valid = [self.fresh() for _ in range(64)]
        self.genuine: set[bytes] = set(self.valid)  # every envelope a unit really sealed

    def fresh(self) -> bytes:
        u = self.units[self.rng.randrange(len(self.units))]
        noise = np.random.default_rng(self.rng.randrange(2**32)).standard_normal(128).astype(np.float32)
        v = self.ref + self.rng.choice([0.1, 1.0, 5.0]) * noise / np.linalg.norm(noise)
        payload = Payload(
            template=Template.from_array(v / np.linalg.norm(v), model_id=MODEL[0], model_version=MODEL[1]),
            captured_at_ms=self.now_ms - self.rng.choice([1000, 1000, 1000, 90 * 86_400_000]),
            liveness=Liveness(True, "blink", 0.9),
            reference=self.rng.choice([REF, "rNobodyHasThisReference"]),
            prev_digest=u[3], quality={"blur": 0.4},  # type: ignore[arg-type]
        )
        u[2] = int(u[2]) + 1  # type: ignore[call-overload]
        s = seal(payload, tenant="acme", device_id=str(u[0]), sequence=int(u[2]),  # type: ignore[call-overload]
                 signing_key=u[1], carrier_key=self.carrier)  # type: ignore[arg-type]
        u[3] = s.digest
        if hasattr(self, "genuine"):
            self.genuine.add(s.data)
        return s.data


def mutate(c: Corpus, rng: random.Random) -> tuple[str, bytes, bytes | None]:
    """(strategy, data, the valid envelope it came from or None)."""
    base = rng.choice(c.valid)
    k = rng.randrange(12)
    if k == 0:
        return "random", rng.randbytes(rng.randrange(0, 2048)), None
    if k == 1:
        m = bytearray(base)
        for _ in range(rng.randrange(1, 9)):
            m[rng.randrange(len(m))] ^= 1 << rng.randrange(8)
        return "bitflip", bytes(m), base
    if k == 2:
        m = bytearray(base)
        m[rng.randrange(len(m))] = rng.randrange(256)
        return "byteset", bytes(m), base
    if k == 3:
        return "truncate", base[: rng.randrange(len(base))], base
    if k == 4:
        return "extend", base + rng.randbytes(rng.randrange(1, 300)), base
    if k == 5:
        other = rng.choice(c.valid)
        cut = rng.randrange(len(base))
        return "splice", base[:cut] + other[cut:], base
    if k == 6:
        hdr = rng.randrange(62, 100)
        return "header+random", base[:hdr] + rng.randbytes(rng.randrange(0, 1200)), base
    if k == 7:
        m = bytearray(base)
        m[4] = rng.randrange(256)  # version
        return "version", bytes(m), base
    if k == 8:
        m = bytearray(base)
        for pos in rng.sample(range(6, 62), 4):  # message id / sequence / key ids
            m[pos] = rng.randrange(256)
        return "header-fields", bytes(m), base
    if k == 9:
        return "redelivery", base, None
    if k == 10:
        fresh = c.fresh()
        if rng.random() < 0.1:
            c.valid[rng.randrange(len(c.valid))] = fresh
        return "fresh", fresh, None
    m = bytearray(base)
    ins = rng.randrange(len(m))
    cut = ins + rng.randrange(0, 4)
    return "insert-delete", bytes(m[:ins] + rng.randbytes(rng.randrange(0, 4)) + m[cut:]), base


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--database", default="", help="default: SQLite in a temp dir; or a postgresql:// DSN")
    args = ap.parse_args()
    logging.getLogger("kycedge.carrier").setLevel(logging.ERROR)  # stale/replayed warnings are expected
    rng = random.Random(args.seed)
    crashes = forgeries = 0
    reasons: collections.Counter[str] = collections.Counter()
    strategies: collections.Counter[str] = collections.Counter()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kycedge-fuzz-") as tmp:
        cfg = CarrierConfig(state_dir=Path(tmp), database=args.database)
        init_keys(cfg)
        with Receiver.from_config(cfg) as rx:
            corpus = Corpus(rx, rng, int(time.time() * 1000))
            rkeys = rx.receipt_public_keys
            done = 0
            while done < args.iterations:
                n = min(args.batch, args.iterations - done)
                items = [mutate(corpus, rng) for _ in range(n)]
                try:
                    outs = rx.handle_batch([d for _, d, _ in items])
                except Exception:
                    crashes += n
                    traceback.print_exc(limit=5)
                    done += n
                    continue
                for (strategy, data, base), out in zip(items, outs, strict=True):
                    strategies[strategy] += 1
                    if out.reason == "internal-error":  # caught and logged by the receiver: still a bug
                        crashes += 1
                    reasons[out.reason if out.receipt is not None else "no-receipt"] += 1
                    # a splice at offset 0 (or inside a common prefix) IS another genuine envelope
                    altered = base is not None and data not in corpus.genuine
                    if altered and out.status == "accepted":
                        forgeries += 1
                        print(f"FORGERY accepted: strategy={strategy} len={len(data)}", file=sys.stderr)
                    if out.receipt is not None:
                        try:
                            r = verify_receipt(out.receipt, rkeys, expected_device_id=str(out.device_id))
                            if r.message_id != out.message_id or r.reason != out.reason:
                                raise ValueError("receipt names another message or reason")
                        except Exception as e:
                            forgeries += 1
                            print(f"BAD RECEIPT: strategy={strategy}: {e}", file=sys.stderr)
                done += n
            counts = rx.store.counts()
    dt = time.perf_counter() - t0
    print(f"iterations={args.iterations} crashes={crashes} forgeries={forgeries} seconds={dt:.1f} "
          f"rate={args.iterations / dt:,.0f}/s seed={args.seed} pid={os.getpid()}")
    print("strategies: " + " ".join(f"{k}={v}" for k, v in sorted(strategies.items())))
    print("outcomes:   " + " ".join(f"{k}={v}" for k, v in sorted(reasons.items())))
    print(f"stored:     receipts={counts['receipts']} templates={counts['templates']}")
    return 1 if crashes or forgeries else 0


if __name__ == "__main__":
    sys.exit(main())
