"""The ``kycedge`` command line (the unit): one module per command, listed by name.

Each module exposes ``register(subparsers)``. ``demo`` is the lab's command
(``kycedge.lab.cli``): it is named here, imported only when ``kycedge`` builds its
parser, and the unit's own code never imports the lab.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from kycedge.core.cli import dispatch

# Sub-command modules of `kycedge`, in the order --help lists them.
COMMANDS: tuple[str, ...] = (
    "kycedge.lab.cli",
    "kycedge.unit.cli.embed",
    "kycedge.unit.cli.liveness",
    "kycedge.unit.cli.keys",
    "kycedge.unit.cli.config",
    "kycedge.unit.cli.run",
    "kycedge.unit.cli.updates",
)


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch(
        "kycedge", "Face-capture firmware for real-name SIM registration units.", COMMANDS, argv
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
