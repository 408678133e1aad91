"""``kycedge updates status | rollback | recover``: inspect and repair the unit's model sets.

    kycedge updates status   [--state-dir /var/lib/kycedge/models] [--json]
    kycedge updates rollback [--state-dir …] [--reason operator]   (then restart the daemon)
    kycedge updates recover  [--state-dir …]                       (what the daemon runs at start)
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

DEFAULT_DIR = Path(os.environ.get("KYCEDGE_MODELS_STATE_DIR", "/var/lib/kycedge/models"))


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("updates", help="model sets on this unit: status, rollback, recover")
    sub = p.add_subparsers(dest="updates_command", metavar="ACTION", required=True)
    for name, fn, text in (("status", _status, "current and previous set, journal, last rollback"),
                           ("rollback", _rollback, "return to the previous set (restart the daemon after)"),
                           ("recover", _recover, "bring the store to a consistent state (as at start)")):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("--state-dir", type=Path, default=DEFAULT_DIR,
                        help=f"updates.state_dir (default {DEFAULT_DIR})")
        if name == "status":
            sp.add_argument("--json", action="store_true")
        if name == "rollback":
            sp.add_argument("--reason", default="operator", help="reason recorded in the journal")
        sp.set_defaults(handler=fn)


def _describe(store: Any) -> dict[str, Any]:
    def one(path: Path | None) -> dict[str, Any] | None:
        if path is None:
            return None
        m = store.manifest(path)
        return {"set": path.name, "bundle_version": m.bundle_version if m else 0,
                "model": f"{m.matching.model_id}@{m.matching.model_version}" if m else "factory"}
    j = store.journal()
    return {"current": one(store.current()), "previous": one(store.previous()), "state": j.state,
            "rejected": list(j.rejected), "rejections": {k: dict(v) for k, v in j.rejections.items()},
            "last_rollback": j.last_rollback}


def _status(args: argparse.Namespace) -> int:
    from kycedge.unit.updates.switch import ModelStore

    info = _describe(ModelStore(args.state_dir))
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        for k, v in info.items():
            print(f"{k}: {v}")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from kycedge.unit.updates.switch import ModelStore

    store = ModelStore(args.state_dir)
    back = store.rollback(args.reason, "rolled back by an operator")
    print(f"current -> {back.name if back else None}; restart the daemon to load it")
    return 0


def _recover(args: argparse.Namespace) -> int:
    from kycedge.unit.updates.switch import ModelStore

    rec = ModelStore(args.state_dir).recover()
    print(f"{rec.action}: current {rec.current.name if rec.current else None} {rec.reason}".rstrip())
    return 0
