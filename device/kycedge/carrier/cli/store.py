"""``kycedge-carrier ingest | purge | db``: one envelope by hand, retention, the storage schema."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kycedge.carrier.cli.common import common_args, config_of, store_of


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("ingest", help="ingest one envelope file (debugging); prints the receipt")
    common_args(p)
    p.add_argument("file", type=Path)
    p.add_argument("--receipt-out", type=Path, default=None, help="also write the receipt bytes here")
    p.set_defaults(handler=_ingest)

    p = subparsers.add_parser("purge", help="apply the retention policy now")
    common_args(p)
    p.set_defaults(handler=_purge)

    db = subparsers.add_parser("db", help="storage schema")
    dbs = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    p = dbs.add_parser("migrate", help="apply pending migrations")
    common_args(p)
    p.set_defaults(handler=_db_migrate)
    p = dbs.add_parser("status", help="schema version and row counts")
    common_args(p)
    p.set_defaults(handler=_db_status)


def _ingest(args: argparse.Namespace) -> int:
    from kycedge.carrier.receiver import Receiver
    from kycedge.core.errors import CarrierError

    try:
        data = args.file.read_bytes()
    except OSError as e:
        raise CarrierError(f"{args.file}: cannot read envelope: {e.strerror or e}") from e
    with Receiver.from_config(config_of(args)) as rx:
        out = rx.handle(data)
    print(json.dumps({
        "reason": out.reason, "status": out.status,
        "message_id": str(out.message_id) if out.message_id else None,
        "tenant": out.tenant, "device_id": out.device_id, "score": out.score, "threshold": out.threshold,
        "duplicate": out.duplicate, "receipt_topic": out.receipt_topic, "detail": out.detail,
        "receipt": out.receipt.hex() if out.receipt is not None else None,
    }, sort_keys=True))
    if args.receipt_out is not None and out.receipt is not None:
        args.receipt_out.write_bytes(out.receipt)
    return 0 if out.receipt is not None else 1


def _purge(args: argparse.Namespace) -> int:
    from kycedge.carrier.retention import purge

    cfg = config_of(args)
    with store_of(args) as store:
        c = purge(store, cfg)
    print(f"purged templates={c.templates} receipts={c.receipts} sequences={c.sequences}")
    return 0


def _db_migrate(args: argparse.Namespace) -> int:
    with store_of(args) as store:
        print(f"schema_version {store.schema_version()}")
    return 0


def _db_status(args: argparse.Namespace) -> int:
    from kycedge.carrier.store import is_postgres, open_store
    from kycedge.core.errors import CarrierError

    target = config_of(args).database_target
    if not is_postgres(target) and not Path(target).is_file():
        # sqlite3.connect would create an empty file: status only reads.
        raise CarrierError(f"database: expected an existing SQLite file, got none at {target} "
                           "(create it with: kycedge-carrier db migrate)", reason="no-database")
    with open_store(target, migrate=False) as store:
        print(f"backend {store.backend} schema_version {store.schema_version()}")
        for table, n in store.counts().items():
            print(f"{table} {n}")
    return 0
