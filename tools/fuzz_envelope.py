#!/usr/bin/env python3
"""Mutational fuzzing of the envelope and receipt parsers.

Each iteration picks one input and feeds it to ``peek_header``, ``open_envelope`` and
``verify_receipt``; anything raised other than ``EnvelopeError`` is a crash. Inputs:

- ``outer``: a valid envelope mutated (bit flips, byte sets, inserts, deletes,
  truncation, extension, chunk duplication, splices with another envelope);
- ``inner``: a valid header with a mutated COSE_Sign1 re-encrypted under it (reaches the
  COSE parser past decryption);
- ``signed``: a mutated payload CBOR re-signed with the device key and sealed (reaches
  the payload decoder past the signature check);
- ``receipt``: a mutated valid receipt;
- ``random``: random bytes, bare or behind a valid magic/version/suite prefix.

    .venv/bin/python tools/fuzz_envelope.py --iterations 100000 [--seed 1] [--crash-dir DIR]

Prints ``iterations=N crashes=C forgeries=F ...`` and exits 1 if C or F > 0. ``accepted``
counts inputs that opened/verified: byte-identical originals (no-op mutations, splices
that rebuild another original) and re-signed ``signed`` inputs; a ``forgery`` is
anything else that verified (an altered envelope, a COSE part or a receipt that is not
byte-identical to one we made).
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
from kycedge import crypto
from kycedge.protocol.envelope import (
    CarrierKey,
    EnvelopeError,
    Liveness,
    Payload,
    Template,
    open_envelope,
    peek_header,
    seal,
    sign_receipt,
    verify_receipt,
)
from kycedge.protocol.envelope.cose import CT_TEMPLATE, sign1
from kycedge.protocol.envelope.header import encode_header, hpke_info
from kycedge.protocol.envelope.seal import encode_payload


def mutate(rng: random.Random, data: bytes, other: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
        op = rng.randrange(9)
        pos = rng.randrange(len(b) + 1) if b else 0
        if op == 0 and b:  # bit flip
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and b:  # interesting byte
            b[rng.randrange(len(b))] = rng.choice((0x00, 0xFF, 0x7F, 0x80, 0x18, 0x19, 0x1A, 0x1B, 0x5F, 0x9F,
                                                   0xBF, 0xFF, 0xD2, 0xF9, 0xFB, 0x40, 0x60, 0xA0, 0x80))
        elif op == 2:  # insert
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
        elif op == 3 and b:  # delete
            del b[pos: pos + rng.randrange(1, 17)]
        elif op == 4:  # truncate
            del b[rng.randrange(len(b) + 1):]
        elif op == 5:  # extend
            b += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 65)))
        elif op == 6 and b:  # duplicate a chunk
            i = rng.randrange(len(b))
            b[i:i] = b[i: i + rng.randrange(1, 33)]
        elif op == 7 and other:  # splice with another input
            cut = rng.randrange(min(len(b), len(other)) + 1)
            b = b[:cut] + bytearray(other[cut:])
        elif op == 8 and b:  # overwrite a length-ish byte with a big value
            b[rng.randrange(len(b))] = rng.choice((0x1B, 0x5B, 0x7B, 0x9B, 0xBB))
    return bytes(b)


def main() -> int:
    ap = argparse.ArgumentParser(description="mutational fuzzing of envelope/receipt parsing")
    ap.add_argument("--iterations", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--crash-dir", type=Path, default=None, help="write crashing inputs here")
    args = ap.parse_args()
    rng = random.Random(args.seed)

    device = crypto.generate_signing_key()
    kem = crypto.generate_kem_key()
    carrier = CarrierKey.from_public_key(kem.public_key())
    receipt_key = crypto.generate_signing_key()
    ckeys = {carrier.key_id: kem}
    rkeys = {crypto.key_id(receipt_key.public_key()): receipt_key.public_key()}
    nprng = np.random.default_rng(args.seed)
    envelopes, headers, payloads = [], [], []
    for i, dim in enumerate((16, 128, 512)):
        v = nprng.standard_normal(dim).astype(np.float32)
        p = Payload(template=Template.from_array(v, model_id="sface", model_version="1"),
                    captured_at_ms=1_764_000_000_000 + i, liveness=Liveness(True, "blink", 0.5),
                    reference="rFuzzReference_0123abc", quality={"blur": 0.5, "face_px": 100.0})
        s = seal(p, tenant="acme", device_id=f"dev-{i}", sequence=i, signing_key=device, carrier_key=carrier)
        envelopes.append(s.data)
        headers.append(s.header)
        payloads.append(p)
    signed_parts = [open_envelope(e, device_public_key=device.public_key(), carrier_private_keys=ckeys).signed
                    for e in envelopes]
    payload_cbor = [encode_payload(h, p) for h, p in zip(headers, payloads, strict=True)]
    receipts = [sign_receipt(receipt_key, message_id=h.message_id, tenant="acme", device_id="dev-0",
                             reason=r, **({"score": 0.5, "threshold": 0.4} if r == "match" else {}))
                for h, r in zip(headers, ("match", "accepted", "replayed"), strict=True)]

    def reseal(header_index: int, inner: bytes) -> bytes:
        hb = encode_header(headers[header_index])
        return hb + crypto.hpke_seal(carrier.public_key, inner, info=hpke_info(hb))

    def gen_outer() -> bytes:
        return mutate(rng, rng.choice(envelopes), rng.choice(envelopes))

    def gen_inner() -> bytes:
        i = rng.randrange(len(envelopes))
        return reseal(i, mutate(rng, signed_parts[i], rng.choice(signed_parts)))

    def gen_signed() -> bytes:
        i = rng.randrange(len(envelopes))
        return reseal(i, sign1(device, mutate(rng, payload_cbor[i], rng.choice(payload_cbor)), CT_TEMPLATE))

    def gen_receipt() -> bytes:
        return mutate(rng, rng.choice(receipts), rng.choice(receipts))

    def gen_random() -> bytes:
        raw = rng.randbytes(rng.randrange(0, 600))
        return rng.choice((b"", b"KYCE\x01\x01", envelopes[0][:62])) + raw

    generators: list[tuple[str, Callable[[], bytes], int]] = [
        ("outer", gen_outer, 40), ("inner", gen_inner, 15), ("signed", gen_signed, 15),
        ("receipt", gen_receipt, 20), ("random", gen_random, 10),
    ]
    names = [g[0] for g in generators]
    funcs = {g[0]: g[1] for g in generators}
    weights = [g[2] for g in generators]

    reasons: collections.Counter[str] = collections.Counter()
    kinds: collections.Counter[str] = collections.Counter()
    accepted_by: collections.Counter[str] = collections.Counter()
    accepted = crashes = forgeries = 0
    t0 = time.perf_counter()
    for it in range(args.iterations):
        kind = rng.choices(names, weights)[0]
        kinds[kind] += 1
        data = funcs[kind]()
        for name in ("peek_header", "open_envelope", "verify_receipt"):
            try:
                if name == "peek_header":
                    peek_header(data)
                elif name == "open_envelope":
                    opened = open_envelope(data, device_public_key=device.public_key(),
                                           carrier_private_keys=ckeys)
                    accepted += 1
                    accepted_by[f"{kind}->open"] += 1
                    # only a payload the device really signed may open ("signed" inputs are re-signed)
                    if (kind != "signed" and opened.signed not in signed_parts) or (
                            kind == "outer" and data not in envelopes):
                        forgeries += 1
                        print(f"FORGERY iteration={it} kind={kind} input={data.hex()}", file=sys.stderr)
                else:
                    verify_receipt(data, rkeys, expected_device_id="dev-0")
                    accepted += 1
                    accepted_by[f"{kind}->receipt"] += 1
                    if data not in receipts:
                        forgeries += 1
                        print(f"FORGERY iteration={it} kind={kind} receipt={data.hex()}", file=sys.stderr)
            except EnvelopeError as e:
                reasons[f"{name}:{e.reason}"] += 1
            except Exception:
                crashes += 1
                print(f"CRASH iteration={it} kind={kind} target={name} input={data.hex()}", file=sys.stderr)
                traceback.print_exc()
                if args.crash_dir:
                    args.crash_dir.mkdir(parents=True, exist_ok=True)
                    (args.crash_dir / f"crash-{it}-{name}.bin").write_bytes(data)
    elapsed = time.perf_counter() - t0
    print(f"iterations={args.iterations} crashes={crashes} forgeries={forgeries} accepted={accepted} "
          f"seconds={elapsed:.1f} "
          f"rate={args.iterations / elapsed:.0f}/s seed={args.seed}")
    print("inputs: " + " ".join(f"{k}={v}" for k, v in sorted(kinds.items())))
    print("accepted: " + " ".join(f"{k}={v}" for k, v in sorted(accepted_by.items())))
    print("rejections: " + " ".join(f"{k}={v}" for k, v in sorted(reasons.items())))
    return 1 if crashes or forgeries else 0


if __name__ == "__main__":
    sys.exit(main())
