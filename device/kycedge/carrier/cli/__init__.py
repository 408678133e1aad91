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

import sys
from collections.abc import Sequence

from kycedge.carrier.cli.common import load_config
from kycedge.core.cli import dispatch

__all__ = ["load_config", "main"]

# Sub-command modules (each exposes ``register(subparsers)``), in the order --help lists them.
COMMANDS: tuple[str, ...] = (
    "kycedge.carrier.cli.keys",
    "kycedge.carrier.cli.devices",
    "kycedge.carrier.cli.references",
    "kycedge.carrier.cli.store",
    "kycedge.carrier.serve",
)


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch(
        "kycedge-carrier", "Carrier reference receiver: keys, device registry, references, ingest.",
        COMMANDS, argv,
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
