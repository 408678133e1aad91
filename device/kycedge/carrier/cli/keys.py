"""``kycedge-carrier keys``: the carrier's HPKE, receipt-signing and at-rest keys."""

from __future__ import annotations

import argparse

from kycedge.carrier.cli.common import common_args, config_of


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = subparsers.add_parser("keys", help="carrier keys: HPKE, receipt signing, at-rest")
    ks = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    p = ks.add_parser("init", help="create missing keys (0600); --rotate adds a new HPKE key")
    common_args(p)
    p.add_argument("--rotate", action="store_true", help="add a new HPKE key (the old ones stay active)")
    p.set_defaults(handler=_keys_init)


def _keys_init(args: argparse.Namespace) -> int:
    from kycedge.carrier.keyring import init_keys

    for line in init_keys(config_of(args), rotate=args.rotate):
        print(line)
    return 0
