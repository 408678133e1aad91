"""``kycedge-fleet ca init | device issue | service issue``: the broker's mutual-TLS PKI.

    kycedge-fleet ca init --dir ca/
    kycedge-fleet device issue --ca-dir ca/ --tenant acme --device shop-0001 --out unit/
    kycedge-fleet device issue --ca-dir ca/ --tenant acme --device shop-0001 --csr unit.csr --out unit/
    kycedge-fleet service issue --ca-dir ca/ --name broker --server --dns mqtt.example \
        --key-group mosquitto --out /etc/mosquitto/kycedge/      # key root:mosquitto 0640
    kycedge-fleet service issue --ca-dir ca/ --name carrier-receiver --out receiver/
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kycedge.core.errors import KycEdgeError


def register(sub: Any) -> None:
    ca = sub.add_parser("ca", help="the fleet CA for the broker's mutual TLS")
    ca_sub = ca.add_subparsers(dest="ca_command", metavar="ACTION", required=True)
    init = ca_sub.add_parser("init", help="create ca.key (0600) and ca.crt in --dir")
    init.add_argument("--dir", type=Path, required=True, help="CA directory")
    init.add_argument("--name", default="kycedge fleet CA", help="CA common name")
    init.add_argument("--days", type=int, default=3650)
    init.add_argument("--force", action="store_true", help="overwrite an existing CA")
    init.set_defaults(handler=_ca_init)

    dev = sub.add_parser("device", help="unit client certificates")
    dev_sub = dev.add_subparsers(dest="device_command", metavar="ACTION", required=True)
    di = dev_sub.add_parser("issue", help="issue a unit certificate (CN <tenant>/<device>)")
    di.add_argument("--ca-dir", type=Path, required=True)
    di.add_argument("--tenant", required=True)
    di.add_argument("--device", required=True)
    di.add_argument("--csr", type=Path, help="the unit's CSR (PEM); without it a key is generated here")
    di.add_argument(
        "--out", type=Path, required=True, help="output directory (device.crt, ca.crt[, device.key])"
    )
    di.add_argument("--days", type=int, default=365)
    _key_access_args(di)
    di.set_defaults(handler=_device_issue)

    svc = sub.add_parser("service", help="broker and carrier-side certificates")
    svc_sub = svc.add_subparsers(dest="service_command", metavar="ACTION", required=True)
    si = svc_sub.add_parser("issue", help="issue a service certificate (CN --name)")
    si.add_argument("--ca-dir", type=Path, required=True)
    si.add_argument("--name", required=True, help="e.g. broker, carrier-receiver, fleet-admin")
    si.add_argument("--server", action="store_true", help="a server certificate (the broker)")
    si.add_argument("--dns", action="append", default=[], help="subjectAltName DNS name (repeatable)")
    si.add_argument("--ip", action="append", default=[], help="subjectAltName IP address (repeatable)")
    si.add_argument("--csr", type=Path, help="a CSR (PEM); without it a key is generated here")
    si.add_argument("--out", type=Path, required=True)
    si.add_argument("--days", type=int, default=365)
    _key_access_args(si)
    si.set_defaults(handler=_service_issue)


def _key_access_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key-group", default=None, metavar="GROUP",
                   help="make the generated key 0640 with this group (e.g. mosquitto: the broker "
                   "reads its key after dropping to that user)")
    p.add_argument("--key-owner", default=None, metavar="USER",
                   help="give the generated key to this user (stays 0600), e.g. kycedge-carrier")


def _read_csr(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as e:
        raise KycEdgeError(
            f"{path}: cannot read the CSR: {e.strerror or e}", reason="provision-failed"
        ) from e


def _print(issued: Any, args: argparse.Namespace) -> None:
    from kycedge.fleet.key_access import hand_over

    print(f"issued {issued.common_name}: {issued.cert}")
    if issued.key is not None:
        mode = hand_over(issued.key, owner=args.key_owner, group=args.key_group)
        who = f" {args.key_owner or ''}{':' + args.key_group if args.key_group else ''}".rstrip()
        print(f"key ({mode:04o}{who}, keep on the client only): {issued.key}")
    print(f"CA certificate: {issued.ca_cert}")


def _check_key_access(args: argparse.Namespace) -> None:
    from kycedge.fleet.key_access import check_names

    check_names(args.key_owner, args.key_group)
    if args.csr is not None and (args.key_owner or args.key_group):
        raise KycEdgeError("--key-owner/--key-group: expected a key generated here, got --csr "
                           "(the key stays where the request was made)", reason="provision-failed")


def _ca_init(args: argparse.Namespace) -> int:
    from kycedge.fleet import provision

    files = provision.init_ca(args.dir, args.name, days=args.days, force=args.force)
    print(f"CA created: {files.cert} (key {files.key}, 0600: keep it offline)")
    return 0


def _device_issue(args: argparse.Namespace) -> int:
    from kycedge.fleet import provision

    _check_key_access(args)
    _print(provision.issue_device(args.ca_dir, args.tenant, args.device, args.out,
                                  csr_pem=_read_csr(args.csr), days=args.days), args)
    return 0


def _service_issue(args: argparse.Namespace) -> int:
    from kycedge.fleet import provision

    _check_key_access(args)
    _print(provision.issue_service(
        args.ca_dir, args.name, args.out, server=args.server, dns_names=tuple(args.dns),
        ip_addresses=tuple(args.ip), csr_pem=_read_csr(args.csr), days=args.days,
    ), args)
    return 0
