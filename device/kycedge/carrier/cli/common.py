"""What every ``kycedge-carrier`` command shares: ``--config`` / ``--state-dir`` / ``--database``
and the :class:`~kycedge.carrier.config.CarrierConfig` they give."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from kycedge.carrier.config import DEFAULT_STATE_DIR

__all__ = ["common_args", "config_of", "load_config", "read_file", "store_of"]


def common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None, help="TOML file with a [carrier] table")
    p.add_argument("--state-dir", type=Path, default=None,
                   help=f"override carrier.state_dir (default {DEFAULT_STATE_DIR}, "
                   "env KYCEDGE_CARRIER_STATE_DIR)")
    p.add_argument("--database", default=None,
                   help="override carrier.database (SQLite path or postgresql:// DSN)")


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


def config_of(args: argparse.Namespace) -> Any:
    return load_config(args.config, state_dir=args.state_dir, database=args.database)


def store_of(args: argparse.Namespace) -> Any:
    from kycedge.carrier.store import open_store

    return open_store(config_of(args).database_target)


def read_file(path: Path, what: str) -> bytes:
    from kycedge.carrier.registry import RegistryError

    try:
        return path.read_bytes()
    except OSError as e:
        raise RegistryError(f"{path}: cannot read the {what}: {e.strerror or e}",
                            reason="bad-attestation") from e
