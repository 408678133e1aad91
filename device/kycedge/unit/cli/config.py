"""``kycedge config check PATH`` and ``kycedge config schema``: the unit's TOML config.

``check`` validates types and ranges of every section (the same code the daemon runs at
start) and that every file the config names exists; it prints ``ok: PATH`` and exits 0,
or prints each problem on its own line (dotted key, expected, actual) and exits 2.
``schema`` prints the JSON Schema (draft 2020-12) of the whole file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("config", help="validate the unit's TOML config or print its JSON Schema")
    sub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="validate a config file (types, ranges, referenced files)")
    check.add_argument("path", type=Path, help="the TOML file, e.g. /etc/kycedge/kycedge.toml")
    check.add_argument("--no-files", action="store_true", help="skip the check that named files exist")
    check.set_defaults(handler=_check)
    schema = sub.add_parser("schema", help="print the JSON Schema of the config file")
    schema.set_defaults(handler=_schema)


def _check(args: argparse.Namespace) -> int:
    from kycedge.core.config import problems_of
    from kycedge.core.errors import ConfigError
    from kycedge.unit.daemon import settings

    try:
        s = settings.load(args.path)
    except ConfigError as e:  # every problem, one line each (they name the file already)
        for p in problems_of(e):
            print(f"kycedge: error: bad-config: {p}", file=sys.stderr)
        return 2
    problems = [] if args.no_files else settings.check_files(s)
    for p in problems:
        print(f"kycedge: error: bad-config: {args.path}: {p}", file=sys.stderr)
    if problems:
        return 2
    print(f"ok: {args.path} (tenant {s.daemon.tenant}, device {s.daemon.device_id}, "
          f"camera {s.capture.source}, broker {s.uplink.host}:{s.uplink.port})")
    return 0


def _schema(args: argparse.Namespace) -> int:
    from kycedge.unit.daemon import settings

    json.dump(settings.schema(), sys.stdout, indent=2, sort_keys=False)
    print()
    return 0
