"""The `sightql` command tree, read from the Typer app, and main() run in-process.

Tests walk this tree, so a command added later is covered without being listed anywhere.
"""

from __future__ import annotations

import sys

import typer.main
from typer.core import TyperGroup

from sightql.cli import main
from sightql.cli.app import app


def _tree(group, path=()):
    """(path, command) for the root, every group and every command under it."""
    yield path, group
    for name, command in sorted(group.commands.items()):
        if isinstance(command, TyperGroup):
            yield from _tree(command, (*path, name))
        else:
            yield (*path, name), command


TREE = list(_tree(typer.main.get_command(app)))
GROUPS = [path for path, command in TREE if isinstance(command, TyperGroup)]
COMMANDS = [(path, command) for path, command in TREE if not isinstance(command, TyperGroup)]


def run_main(monkeypatch, capsys, args: list[str]) -> tuple[int, str, str]:
    """`sightql ARGS` in this process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["sightql", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err
