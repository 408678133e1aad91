"""The ``kycedge`` command line: a thin dispatcher.

Each program (``kycedge`` in ``kycedge.unit.cli``, ``kycedge-carrier`` in
``kycedge.carrier.cli``, ``kycedge-fleet`` in ``kycedge.fleet.cli``) lists its sub-command
modules by name; each module exposes
``register(subparsers) -> None``, which adds its parser and sets ``handler`` (a function
``(argparse.Namespace) -> int``) as the parser default. Modules import heavy libraries
inside their handlers so that ``kycedge --help`` stays fast.

Errors derived from :class:`kycedge.core.errors.KycEdgeError` reaching this level are printed
as one line ``kycedge: error: <reason>: <message>`` with exit code 2; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from kycedge import __version__
from kycedge.core.errors import KycEdgeError


def build_parser(prog: str, description: str, commands: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--version", action="version", version=f"{prog} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in commands:
        importlib.import_module(name).register(sub)
    return parser


def dispatch(
    prog: str, description: str, commands: Sequence[str], argv: Sequence[str] | None = None
) -> int:
    """Parse ``argv`` with the sub-commands in ``commands`` and run the chosen handler.

    Shared by ``kycedge``, ``kycedge-carrier`` and ``kycedge-fleet``.
    """
    parser = build_parser(prog, description, commands)
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        code: int = handler(args)
    except KycEdgeError as e:
        print(f"{prog}: error: {e.reason}: {e.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code
