"""``kycedge-carrier``: the carrier receiver's command line.

Every command takes ``--config FILE`` (a TOML file; its ``[carrier]`` table is the
:class:`~kycedge.carrier.config.CarrierConfig`) and/or ``--state-dir DIR`` /
``--database DSN`` overrides::

    kycedge-carrier keys init [--rotate]
    kycedge-carrier device enroll TENANT DEVICE_ID PUBLIC_KEY   # 64 hex chars or a PEM file
    kycedge-carrier device revoke TENANT DEVICE_ID [--key-id KID]
    kycedge-carrier device list [--tenant T]
    kycedge-carrier reference add REF IMAGE --tenant T [--models DIR] [--replace]
    kycedge-carrier ingest FILE            # debugging: prints the outcome and the receipt
    kycedge-carrier purge                  # retention
    kycedge-carrier db migrate|status
    kycedge-carrier serve ...              # MQTT consumer (kycedge.carrier.serve)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kycedge.carrier.config import DEFAULT_STATE_DIR
from kycedge.core.cli import dispatch

__all__ = ["load_config", "main", "register"]

COMMANDS: tuple[str, ...] = ("kycedge.carrier.cli", "kycedge.carrier.serve")


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch(
        "kycedge-carrier", "Carrier reference receiver: keys, device registry, references, ingest.",
        COMMANDS, argv,
    )


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None, help="TOML file with a [carrier] table")
    p.add_argument("--state-dir", type=Path, default=None,
                   help=f"override carrier.state_dir (default {DEFAULT_STATE_DIR}, "
                   "env KYCEDGE_CARRIER_STATE_DIR)")
    p.add_argument("--database", default=None,
                   help="override carrier.database (SQLite path or postgresql:// DSN)")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = subparsers.add_parser("keys", help="carrier keys: HPKE, receipt signing, at-rest")
    ks = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    p = ks.add_parser("init", help="create missing keys (0600); --rotate adds a new HPKE key")
    _common(p)
    p.add_argument("--rotate", action="store_true", help="add a new HPKE key (the old ones stay active)")
    p.set_defaults(handler=_keys_init)

    dev = subparsers.add_parser("device", help="device registry")
    ds = dev.add_subparsers(dest="device_command", metavar="ACTION", required=True)
    p = ds.add_parser("enroll", help="enrol a unit's public key (Ed25519 software, or ES256)")
    _common(p)
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
    _common(p)
    p.add_argument("attestation", type=Path, help="the request file (kycedge keys attest)")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(handler=_device_challenge)
    p = ds.add_parser("rotate", help="enrol a unit's next key from the hand-over its current key signed")
    _common(p)
    p.add_argument("handover", type=Path, help="the file `kycedge keys rotate` wrote")
    p.set_defaults(handler=_device_rotate)
    p = ds.add_parser("revoke", help="revoke a unit's key (all its keys without --key-id)")
    _common(p)
    p.add_argument("tenant")
    p.add_argument("device_id")
    p.add_argument("--key-id", default=None)
    p.set_defaults(handler=_device_revoke)
    p = ds.add_parser("list", help="list enrolled units (JSON lines)")
    _common(p)
    p.add_argument("--tenant", default=None)
    p.set_defaults(handler=_device_list)

    ref = subparsers.add_parser("reference", help="reference templates from ID-document photos")
    rs = ref.add_subparsers(dest="reference_command", metavar="ACTION", required=True)
    p = rs.add_parser("add", help="enrol REF from an ID-document photo through the vision pipeline")
    _common(p)
    p.add_argument("reference", help="the registration reference (opaque id from the agent's app)")
    p.add_argument("image", type=Path, help="JPEG/PNG of the ID-document photo")
    p.add_argument("--tenant", required=True)
    p.add_argument("--models", type=Path, default=None, help="models directory (default: kycedge's models/)")
    p.add_argument("--replace", action="store_true", help="replace an existing reference")
    p.set_defaults(handler=_reference_add)
    p = rs.add_parser("remove", help="delete a reference")
    _common(p)
    p.add_argument("reference")
    p.add_argument("--tenant", required=True)
    p.set_defaults(handler=_reference_remove)

    p = subparsers.add_parser("ingest", help="ingest one envelope file (debugging); prints the receipt")
    _common(p)
    p.add_argument("file", type=Path)
    p.add_argument("--receipt-out", type=Path, default=None, help="also write the receipt bytes here")
    p.set_defaults(handler=_ingest)

    p = subparsers.add_parser("purge", help="apply the retention policy now")
    _common(p)
    p.set_defaults(handler=_purge)

    db = subparsers.add_parser("db", help="storage schema")
    dbs = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    p = dbs.add_parser("migrate", help="apply pending migrations")
    _common(p)
    p.set_defaults(handler=_db_migrate)
    p = dbs.add_parser("status", help="schema version and row counts")
    _common(p)
    p.set_defaults(handler=_db_status)


# -- config ----------------------------------------------------------------------------------


def load_config(path: Path | None = None, *, state_dir: Path | None = None,
                database: str | None = None) -> Any:
    """The CarrierConfig from ``path``'s ``[carrier]`` table (or defaults), with overrides."""
    from kycedge.carrier.config import CarrierConfig
    from kycedge.core.config import from_mapping

    cfg = (from_mapping(CarrierConfig, _carrier_table(path), where=f"{path}: ", key="carrier")
           if path is not None else CarrierConfig(state_dir=DEFAULT_STATE_DIR))
    changes: dict[str, Any] = {}
    if state_dir is not None:
        changes["state_dir"] = state_dir
    if database is not None:
        changes["database"] = database
    return dataclasses.replace(cfg, **changes) if changes else cfg


def _carrier_table(path: Path) -> Any:
    """The ``[carrier]`` table of a TOML file (the serve file has other tables beside it)."""
    from kycedge.core.errors import ConfigError

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file: {e.strerror or e}") from e
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: expected UTF-8 TOML, got: {e}") from e
    table = data.get("carrier", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: carrier: expected a table, got {type(table).__name__}")
    return table


def _cfg(args: argparse.Namespace) -> Any:
    return load_config(args.config, state_dir=args.state_dir, database=args.database)


def _store(args: argparse.Namespace) -> Any:
    from kycedge.carrier.store import open_store

    return open_store(_cfg(args).database_target)


# -- handlers --------------------------------------------------------------------------------


def _keys_init(args: argparse.Namespace) -> int:
    from kycedge.carrier.keyring import init_keys

    for line in init_keys(_cfg(args), rotate=args.rotate):
        print(line)
    return 0


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


def _read_file(path: Path, what: str) -> bytes:
    from kycedge.carrier.registry import RegistryError

    try:
        return path.read_bytes()
    except OSError as e:
        raise RegistryError(f"{path}: cannot read the {what}: {e.strerror or e}",
                            reason="bad-attestation") from e


def _device_challenge(args: argparse.Namespace) -> int:
    from kycedge import crypto
    from kycedge.carrier.attest import make_challenge

    data = make_challenge(_cfg(args), _read_file(args.attestation, "attestation request"))
    crypto.write_public_file(args.out, data)
    print(f"challenge: {args.out} (the unit answers with kycedge keys activate)")
    return 0


def _device_enroll_attested(args: argparse.Namespace) -> int:
    from kycedge.carrier.attest import enroll_attested
    from kycedge.carrier.registry import Registry, RegistryError

    if args.proof is None or args.public_key is not None:
        raise RegistryError("--attestation: expected --proof and no public key argument",
                            reason="bad-attestation")
    cfg = _cfg(args)
    data = _read_file(args.attestation, "attestation request")
    proof = _read_file(args.proof, "attestation proof")
    with _store(args) as store:
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
    policy = frozenset(_cfg(args).require_hardware_key)
    with _store(args) as store:
        rec = Registry(store, policy).enroll(args.tenant, args.device_id, crypto.public_key_bytes(key),
                                             signature_alg=crypto.algorithm_of(key))
    print(f"enrolled {rec.tenant}/{rec.device_id} key_id {rec.key_id} {rec.signature_alg} "
          f"key protection {rec.key_protection}")
    return 0


def _device_rotate(args: argparse.Namespace) -> int:
    from kycedge.carrier.handover import accept_handover
    from kycedge.carrier.registry import Registry

    data = _read_file(args.handover, "key hand-over")
    with _store(args) as store:
        rec = accept_handover(Registry(store, frozenset(_cfg(args).require_hardware_key)), data)
    print(f"enrolled {rec.tenant}/{rec.device_id} key_id {rec.key_id} {rec.signature_alg} key protection "
          f"{rec.key_protection} (hand-over); revoke the old key once the unit's outbox has drained")
    return 0


def _device_revoke(args: argparse.Namespace) -> int:
    from kycedge.carrier.registry import Registry

    with _store(args) as store:
        n = Registry(store).revoke(args.tenant, args.device_id, args.key_id)
    print(f"revoked {n} key(s) of {args.tenant}/{args.device_id}")
    return 0


def _device_list(args: argparse.Namespace) -> int:
    with _store(args) as store:
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


def _reference_add(args: argparse.Namespace) -> int:
    from kycedge import crypto
    from kycedge.carrier.references import References
    from kycedge.vision import Pipeline, default_models_dir
    from kycedge.vision.decode import read_image_file

    cfg = _cfg(args)
    pipe = Pipeline.load(args.models or default_models_dir())
    image = read_image_file(args.image, pipe.config.decode)  # ImageError: reason and message
    key = crypto.load_secret_key(cfg.at_rest_key_path)
    with _store(args) as store:
        rec = References(store, key).add_image(args.tenant, args.reference, image, pipe, replace=args.replace)
    print(f"reference {rec.tenant}/{rec.reference} model {rec.model_id} {rec.model_version} "
          f"dim {rec.dim} threshold {rec.threshold}")
    return 0


def _reference_remove(args: argparse.Namespace) -> int:
    from kycedge.core.errors import CarrierError

    with _store(args) as store:
        if not store.delete_reference(args.tenant, args.reference):
            raise CarrierError(f"reference {args.tenant}/{args.reference}: expected one, got none",
                               reason="no-reference")
    print(f"removed {args.tenant}/{args.reference}")
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from kycedge.carrier.receiver import Receiver
    from kycedge.core.errors import CarrierError

    try:
        data = args.file.read_bytes()
    except OSError as e:
        raise CarrierError(f"{args.file}: cannot read envelope: {e.strerror or e}") from e
    with Receiver.from_config(_cfg(args)) as rx:
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

    cfg = _cfg(args)
    with _store(args) as store:
        c = purge(store, cfg)
    print(f"purged templates={c.templates} receipts={c.receipts} sequences={c.sequences}")
    return 0


def _db_migrate(args: argparse.Namespace) -> int:
    with _store(args) as store:
        print(f"schema_version {store.schema_version()}")
    return 0


def _db_status(args: argparse.Namespace) -> int:
    from kycedge.carrier.store import is_postgres, open_store
    from kycedge.core.errors import CarrierError

    target = _cfg(args).database_target
    if not is_postgres(target) and not Path(target).is_file():
        # sqlite3.connect would create an empty file: status only reads.
        raise CarrierError(f"database: expected an existing SQLite file, got none at {target} "
                           "(create it with: kycedge-carrier db migrate)", reason="no-database")
    with open_store(target, migrate=False) as store:
        print(f"backend {store.backend} schema_version {store.schema_version()}")
        for table, n in store.counts().items():
            print(f"{table} {n}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
