"""``kycedge run --config PATH``: the capture daemon (what systemd starts)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("run", help="run the capture daemon (sessions, local API, outbox, uplink)")
    p.add_argument("--config", type=Path, required=True, help="the unit's TOML config file")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from kycedge.unit.daemon import settings
    from kycedge.unit.daemon.service import Daemon

    cfg = settings.load(args.config)  # ConfigError: one line naming key, expected, actual; exit 2
    daemon = Daemon(cfg, config_path=args.config)
    try:
        daemon.start()
    except BaseException:
        daemon.stop()
        raise
    return daemon.run()
