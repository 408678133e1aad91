"""``kycedge-carrier device``: the registry of units' keys (enrol, attest, rotate, revoke, list)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from kycedge.carrier.cli.common import common_args, config_of, read_file, store_of


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dev = subparsers.add_parser("device", help="device registry")
    ds = dev.add_subparsers(dest="device_command", metavar="ACTION", required=True)
    p = ds.add_parser("enroll", help="enrol a unit's public key (Ed25519 software, or ES256)")
    common_args(p)
    p.add_argument("tenant")
    p.add_argument("device_id")
    p.add_argument("public_key", nargs="?", default=None,
                   help="hex (64 chars Ed25519, 130 chars P-256 point; kycedge keys init prints it) or a PEM "
                   "file; a software key. Omit it with --attestation: the key comes from the attestation")
    p.add_argument("--key-id", default=None, help="refuse unless the key has this key id")
    p.add_argument("--attestation", type=Path, default=None,
                   help="TPM attestation request (kycedge keys attest): enrol the key as tpm-held")
    p.add_argument("--proof", type=Path, default=None,
                   help="the unit's answer to `device challenge` (kycedge keys activate)")
    p.set_defaults(handler=_device_enroll)
    p = ds.add_parser("challenge",
                      help="check a TPM attestation request and write the challenge for the unit")
    common_args(p)
    p.add_argument("attestation", type=Path, help="the request file (kycedge keys attest)")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(handler=_device_challenge)
    p = ds.add_parser("rotate", help="enrol a unit's next key from the hand-over its current key signed")
    common_args(p)
    p.add_argument("handover", type=Path, help="the file `kycedge keys rotate` wrote")
    p.set_defaults(handler=_device_rotate)
    p = ds.add_parser("revoke", help="revoke a unit's key (all its keys without --key-id)")
    common_args(p)
    p.add_argument("tenant")
    p.add_argument("device_id")
    p.add_argument("--key-id", default=None)
    p.set_defaults(handler=_device_revoke)
    p = ds.add_parser("list", help="list enrolled units (JSON lines)")
    common_args(p)
    p.add_argument("--tenant", default=None)
    p.set_defaults(handler=_device_list)


def _public_key_arg(value: str) -> Any:
    """The unit's verification key from hex (32-byte Ed25519 / 65-byte P-256) or a PEM file."""
    from kycedge import crypto
    from kycedge.core.errors import KeyStoreError

    text = value.strip().lower()
    if len(text) in (64, 130) and all(c in "0123456789abcdef" for c in text):
        return crypto.verify_key_from_raw(bytes.fromhex(text), "ed25519" if len(text) == 64 else "es256")
    path = Path(value)
    if path.is_file():
        return crypto.load_any_verify_key(path)
    raise KeyStoreError(f"public key: expected 64 or 130 hex characters or a PEM file, got {value!r:.80}")


def _device_challenge(args: argparse.Namespace) -> int:
    from kycedge import crypto
    from kycedge.carrier.attest import make_challenge

    data = make_challenge(config_of(args), read_file(args.attestation, "attestation request"))
    crypto.write_public_file(args.out, data)
    print(f"challenge: {args.out} (the unit answers with kycedge keys activate)")
    return 0


def _device_enroll_attested(args: argparse.Namespace) -> int:
    from kycedge.carrier.attest import enroll_attested
    from kycedge.carrier.registry import Registry, RegistryError

    if args.proof is None or args.public_key is not None:
        raise RegistryError("--attestation: expected --proof and no public key argument",
                            reason="bad-attestation")
    cfg = config_of(args)
    data = read_file(args.attestation, "attestation request")
    proof = read_file(args.proof, "attestation proof")
    with store_of(args) as store:
        rec = enroll_attested(Registry(store, frozenset(cfg.require_hardware_key)), cfg, data, proof,
                              tenant=args.tenant, device_id=args.device_id)
    print(f"enrolled {rec.tenant}/{rec.device_id} key_id {rec.key_id} {rec.signature_alg} "
          f"key protection {rec.key_protection} (attested)")
    return 0


def _device_enroll(args: argparse.Namespace) -> int:
    from kycedge import crypto
    from kycedge.carrier.registry import Registry, RegistryError

    if args.attestation is not None:
        return _device_enroll_attested(args)
    if args.public_key is None:
        raise RegistryError("device enroll: expected a public key or --attestation", reason="bad-key")
    key = _public_key_arg(args.public_key)
    kid = crypto.key_id(key)
    if args.key_id is not None and args.key_id != kid:
        raise RegistryError(f"--key-id: expected the key's own id {kid}, got {args.key_id}", reason="bad-key")
    policy = frozenset(config_of(args).require_hardware_key)
    with store_of(args) as store:
        rec = Registry(store, policy).enroll(args.tenant, args.device_id, crypto.public_key_bytes(key),
                                             signature_alg=crypto.algorithm_of(key))
    print(f"enrolled {rec.tenant}/{rec.device_id} key_id {rec.key_id} {rec.signature_alg} "
          f"key protection {rec.key_protection}")
    return 0


def _device_rotate(args: argparse.Namespace) -> int:
    from kycedge.carrier.handover import accept_handover
    from kycedge.carrier.registry import Registry

    data = read_file(args.handover, "key hand-over")
    with store_of(args) as store:
        rec = accept_handover(Registry(store, frozenset(config_of(args).require_hardware_key)), data)
    print(f"enrolled {rec.tenant}/{rec.device_id} key_id {rec.key_id} {rec.signature_alg} key protection "
          f"{rec.key_protection} (hand-over); revoke the old key once the unit's outbox has drained")
    return 0


def _device_revoke(args: argparse.Namespace) -> int:
    from kycedge.carrier.registry import Registry

    with store_of(args) as store:
        n = Registry(store).revoke(args.tenant, args.device_id, args.key_id)
    print(f"revoked {n} key(s) of {args.tenant}/{args.device_id}")
    return 0


def _device_list(args: argparse.Namespace) -> int:
    with store_of(args) as store:
        for d in store.list_devices(args.tenant):
            print(json.dumps({
                "tenant": d.tenant, "device_id": d.device_id, "key_id": d.key_id, "status": d.status,
                "public_key": d.public_key.hex(), "enrolled_at_ms": d.enrolled_at_ms,
                "signature_alg": d.signature_alg, "key_protection": d.key_protection,
                "attested": d.attestation is not None,
                "revoked_at_ms": d.revoked_at_ms,
                "last_sequence": store.last_sequence(d.tenant, d.device_id, d.key_id),
            }, sort_keys=True))
    return 0
