"""``kycedge keys``: the unit's identity (``init``) and its TLS certificate request (``csr``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEFAULT_STATE_DIR = Path(os.environ.get("KYCEDGE_STATE_DIR", "/var/lib/kycedge"))


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("keys", help="device identity: signing key and TLS CSR")
    sub = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    init = sub.add_parser("init", help="create the signing key (if absent) and print its public key")
    init.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                      help=f"state directory (default {DEFAULT_STATE_DIR}, env KYCEDGE_STATE_DIR)")
    init.add_argument("--tpm", default="", metavar="TCTI",
                      help="generate the key inside this TPM 2.0 (ES256), e.g. device:/dev/tpmrm0; "
                      "without it the key is Ed25519 in software")
    init.set_defaults(handler=_init)
    att = sub.add_parser("attest", help="TPM key attestation request for the carrier (enrolment)")
    att.add_argument("--tenant", required=True)
    att.add_argument("--device", required=True)
    att.add_argument("--tpm", required=True, metavar="TCTI", help="the TPM holding the key")
    att.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    att.add_argument("--out", type=Path, required=True, help="write the request here (CBOR)")
    att.set_defaults(handler=_attest)
    act = sub.add_parser("activate", help="answer the carrier's attestation challenge with this TPM")
    act.add_argument("challenge", type=Path, help="the file `kycedge-carrier device challenge` wrote")
    act.add_argument("--tpm", required=True, metavar="TCTI")
    act.add_argument("--out", type=Path, required=True, help="write the proof here (hand it to the carrier)")
    act.set_defaults(handler=_activate)
    rot = sub.add_parser("rotate", help="make the next signing key and the hand-over the current key signs; "
                         "--commit switches to it once the carrier enrolled it")
    rot.add_argument("--tenant")
    rot.add_argument("--device")
    rot.add_argument("--tpm", default="", metavar="TCTI", help="the TPM holding the key (TPM units)")
    rot.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    rot.add_argument("--out", type=Path, default=None,
                     help="write the hand-over here (kycedge-carrier device rotate)")
    rot.add_argument("--commit", action="store_true", help="switch to the prepared key")
    rot.set_defaults(handler=_rotate)
    csr = sub.add_parser("csr", help="write a PEM certificate signing request for the broker's mutual TLS")
    csr.add_argument("--tenant", required=True, help="the carrier tenant this unit belongs to")
    csr.add_argument("--device", required=True, help="the unit's device id")
    csr.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    csr.add_argument("--out", type=Path, default=None,
                     help="also write the CSR here ('-' = stdout only; default: <state-dir>/device-tls.csr)")
    csr.set_defaults(handler=_csr)


def _init(args: argparse.Namespace) -> int:
    from kycedge.unit.identity import init_identity

    identity, created = init_identity(args.state_dir, tpm_tcti=args.tpm)
    try:
        print(f"key_id: {identity.key_id}")
        print(f"algorithm: {identity.algorithm}")
        print(f"key_protection: {identity.key_protection}")
        print(f"public_key: {identity.public_key.hex()}")
        print(f"public_key_file: {identity.public_key_file}")
        print(f"status: {'created' if created else 'existing'}")
    finally:
        identity.close()
    return 0


def _read(path: Path, what: str) -> bytes:
    from kycedge.core.errors import KeyStoreError

    try:
        return path.read_bytes()
    except OSError as e:
        raise KeyStoreError(f"{path}: cannot read the {what}: {e.strerror or e}") from e


def _attest(args: argparse.Namespace) -> int:
    from kycedge import crypto
    from kycedge.unit.attestation import request

    data = request(args.state_dir, args.tpm, args.tenant, args.device)
    crypto.write_public_file(args.out, data)
    print(f"attestation_request: {args.out} ({len(data)} bytes)")
    return 0


def _activate(args: argparse.Namespace) -> int:
    from kycedge import crypto
    from kycedge.unit.attestation import activate

    proof = activate(args.tpm, _read(args.challenge, "attestation challenge"))
    crypto.write_key_file(args.out, proof, 0o600)
    print(f"attestation_proof: {args.out}")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    from kycedge import crypto
    from kycedge.core.errors import ConfigError
    from kycedge.unit.rotation import commit, prepare

    if args.commit:
        identity = commit(args.state_dir, tpm_tcti=args.tpm)
        identity.close()
        print(f"key_id: {identity.key_id}")
        print(f"key_protection: {identity.key_protection}")
        print("status: switched (restart the daemon)")
        return 0
    if not args.tenant or not args.device or args.out is None:
        raise ConfigError("keys rotate: expected --tenant, --device and --out (or --commit)")
    data = prepare(args.state_dir, args.tenant, args.device, tpm_tcti=args.tpm)
    crypto.write_public_file(args.out, data)
    print(f"handover: {args.out} (kycedge-carrier device rotate; then kycedge keys rotate --commit)")
    return 0


def _csr(args: argparse.Namespace) -> int:
    from kycedge import crypto
    from kycedge.protocol.ids import device_common_name
    from kycedge.unit.identity import TLS_CSR_FILE, make_device_csr

    # The broker takes the unit's identity (and so its ACL) from this CN: <tenant>/<device>,
    # the same name `kycedge-fleet device issue --csr` insists on.
    pem = make_device_csr(args.state_dir, device_common_name(args.tenant, args.device))
    if args.out is not None and str(args.out) != "-":
        crypto.write_public_file(args.out, pem)
        print(f"csr_file: {args.out}", file=sys.stderr)
    else:
        print(f"csr_file: {args.state_dir / TLS_CSR_FILE}", file=sys.stderr)
    sys.stdout.write(pem.decode("ascii"))
    return 0
