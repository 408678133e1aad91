"""The ``kycedge-fleet`` command line (fleet admins): the shared dispatcher.

Sub-command modules (each exposes ``register(subparsers)``) are listed in ``COMMANDS``;
add yours with a one-line edit.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from kycedge.core.cli import dispatch

# Sub-command modules of `kycedge-fleet`, in the order --help lists them.
COMMANDS: tuple[str, ...] = (
    "kycedge.fleet.cli.provision",
    "kycedge.fleet.cli.updates",
)


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch(
        "kycedge-fleet", "Fleet administration: certificates, model bundles, rollout.", COMMANDS, argv
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
