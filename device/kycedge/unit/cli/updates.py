"""``kycedge updates status | rollback | recover``: inspect and repair the unit's model sets.

    kycedge updates status   [--config /etc/kycedge/kycedge.toml | --state-dir DIR] [--json]
    kycedge updates rollback [--config … | --state-dir …] [--reason operator]  (then restart the daemon)
    kycedge updates recover  [--config … | --state-dir …]         (what the daemon runs at start)

The store is ``[updates] state_dir`` of ``--config`` (which follows ``[daemon] state_dir``),
or ``--state-dir``, or ``/var/lib/kycedge/models`` (env ``KYCEDGE_MODELS_STATE_DIR``). A
directory that holds no model store is an error (exit 2), never reported as a stable one.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from kycedge.core.errors import UpdateError

DEFAULT_DIR = Path(os.environ.get("KYCEDGE_MODELS_STATE_DIR", "/var/lib/kycedge/models"))


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("updates", help="model sets on this unit: status, rollback, recover")
    sub = p.add_subparsers(dest="updates_command", metavar="ACTION", required=True)
    for name, fn, text in (("status", _status, "current and previous set, journal, last rollback"),
                           ("rollback", _rollback, "return to the previous set (restart the daemon after)"),
                           ("recover", _recover, "bring the store to a consistent state (as at start)")):
        sp = sub.add_parser(name, help=text)
        where = sp.add_mutually_exclusive_group()
        where.add_argument("--config", type=Path, default=None,
                           help="the unit's config file; its updates.state_dir names the store")
        where.add_argument("--state-dir", type=Path, default=None,
                           help=f"updates.state_dir (default {DEFAULT_DIR}, env KYCEDGE_MODELS_STATE_DIR)")
        if name == "status":
            sp.add_argument("--json", action="store_true")
        if name == "rollback":
            sp.add_argument("--reason", default="operator", help="reason recorded in the journal")
        sp.set_defaults(handler=fn)


def _store(args: argparse.Namespace) -> Any:
    """The ModelStore named by the arguments; UpdateError when no store is there."""
    from kycedge.unit.updates.switch import ModelStore

    if args.config is not None:
        from kycedge.unit.daemon import settings

        state_dir = settings.load(args.config).updates.state_dir
    else:
        state_dir = args.state_dir or DEFAULT_DIR
    store = ModelStore(state_dir)
    if store.current() is None:
        raise UpdateError(f"{state_dir}: expected a model store (made by the daemon at its first start with "
                          "[updates] enabled), got no current set", reason="no-store")
    return store


def _describe(store: Any) -> dict[str, Any]:
    def one(path: Path | None) -> dict[str, Any] | None:
        if path is None:
            return None
        m = store.manifest(path)
        model_id, model_version = store.model_of(path)
        return {"set": path.name, "bundle_version": m.bundle_version if m else 0,
                "model": f"{model_id}@{model_version}"}
    j = store.journal()
    return {"current": one(store.current()), "previous": one(store.previous()), "state": j.state,
            "rejected": list(j.rejected), "rejections": {k: dict(v) for k, v in j.rejections.items()},
            "last_rollback": j.last_rollback}


def _text(info: dict[str, Any]) -> list[str]:
    def one(d: dict[str, Any] | None) -> str:
        return "none" if d is None else f"{d['set']} (bundle {d['bundle_version']}, model {d['model']})"
    rb = info["last_rollback"]
    if isinstance(rb, dict):
        rb = " ".join(f"{k}={v}" for k, v in rb.items())
    return [f"current: {one(info['current'])}", f"previous: {one(info['previous'])}",
            f"state: {info['state']}", f"rejected: {', '.join(map(str, info['rejected'])) or 'none'}",
            f"last rollback: {rb or 'none'}"]


def _status(args: argparse.Namespace) -> int:
    info = _describe(_store(args))
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        print("\n".join(_text(info)))
    return 0


def _rollback(args: argparse.Namespace) -> int:
    store = _store(args)
    back = store.rollback(args.reason, "rolled back by an operator")
    print(f"current -> {back.name if back else None}; restart the daemon to load it")
    return 0


def _recover(args: argparse.Namespace) -> int:
    rec = _store(args).recover()
    print(f"{rec.action}: current {rec.current.name if rec.current else None} {rec.reason}".rstrip())
    return 0
