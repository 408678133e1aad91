"""Every kycedge / kycedge-fleet / kycedge-carrier command written in docs/ and README parses.

A command that the code refuses (``invalid choice``, an unknown or missing option) fails
here, so the docs cannot name a command that does not exist again (issue 14: the docs said
``kycedge-fleet device --csr``). Lines are taken from fenced blocks; ``sudo``, ``sudo -u X``
and the ``/opt/kycedge/.venv/bin/`` prefix are dropped; continuation lines are joined;
shell variables are replaced by a placeholder value.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest
from kycedge.core.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PROGRAMS = {
    "kycedge": ("kycedge.unit.cli", "COMMANDS"),
    "kycedge-fleet": ("kycedge.fleet.cli", "COMMANDS"),
    "kycedge-carrier": ("kycedge.carrier.cli", "COMMANDS"),
}
FENCE = re.compile(r"^```[a-z]*\n(.*?)^```$", re.S | re.M)
PREFIX = re.compile(r"^(?:sudo(?: -u \S+)? )?(?:\S*/bin/)?(kycedge(?:-fleet|-carrier)?)\s+(.*)$")


def _parser(prog: str) -> argparse.ArgumentParser:
    import importlib

    module, attr = PROGRAMS[prog]
    return build_parser(prog, "", getattr(importlib.import_module(module), attr))


def doc_commands() -> list[tuple[str, str, str]]:
    out = []
    # docs/admin-guide.md is not here: tests/test_admin_guide.py runs its commands
    docs = sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "admin-guide.md")
    for doc in [ROOT / "README.md", *docs]:
        for block in FENCE.findall(doc.read_text()):
            text = re.sub(r"\\\n\s*", " ", block)
            for line in text.splitlines():
                line = line.split(" #")[0].strip()
                line = re.sub(r"\$\([^)]*\)|<[^>]*>", "PLACEHOLDER", line)
                line = re.sub(r"\s\[[^\]]*\]", "", line)  # optional parts of a synopsis
                line = re.sub(r'"[^"]*\$[^"]*"\S*', "PLACEHOLDER", line)
                line = re.sub(r"\S*\$[A-Za-z_{}]+\S*", "PLACEHOLDER", line)
                line = line.split(" | ")[0].split(" > ")[0].split(" >> ")[0].split(" &")[0].split(" 2>")[0]
                m = PREFIX.match(line)
                if m and m.group(2) and not m.group(2).startswith(("…", "...")):
                    out.append((doc.name, m.group(1), m.group(2)))
    return out


COMMANDS_IN_DOCS = doc_commands()


def test_the_docs_name_commands() -> None:
    progs = {p for _d, p, _a in COMMANDS_IN_DOCS}
    assert progs == set(PROGRAMS), progs
    assert len(COMMANDS_IN_DOCS) > 20


@pytest.mark.parametrize(("doc", "prog", "args"), COMMANDS_IN_DOCS,
                         ids=[f"{d}:{p} {a[:40]}" for d, p, a in COMMANDS_IN_DOCS])
def test_documented_command_parses(doc: str, prog: str, args: str) -> None:
    try:
        argv = shlex.split(args)
    except ValueError:
        pytest.skip("not a plain command line")
    if any(a in ("-h", "--help", "--version") for a in argv):
        return
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            ns = _parser(prog).parse_args(argv)
        except SystemExit:
            pytest.fail(f"{doc}: `{prog} {args}` is refused: {err.getvalue().strip().splitlines()[-1]}")
    assert getattr(ns, "handler", None) is not None, f"{doc}: `{prog} {args}` names no command"
