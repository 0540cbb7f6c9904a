"""The ``sightql`` command: thin commands over the library, each with examples in its help."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import typer

from sightql.cli.app import app
from sightql.cli.search import register as register_search

register_search(app)  # sightql search, sightql index ...

PROG = "sightql"


def main() -> None:
    """Entry point: a user's mistake is one sentence on stderr and exit code 2, never a trace."""
    from sightql.train.distributed import distributed_env

    if distributed_env() is None:
        _main()
        return
    # One rank of a torchrun job. torch.distributed (Gloo) and ONNX Runtime keep native threads
    # whose teardown during interpreter exit can race and abort a finished process ("terminate
    # called without an active exception", seen once in a CI-like run). The rank's work is done,
    # its warehouse closed and its output written here, so it leaves without that teardown.
    code = 0
    try:
        _main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _main() -> None:
    """Exit codes: 0 done, 2 a mistake of the user's, 130 interrupted; 1 with a trace is a bug of ours."""
    from sightql.errors import SightQLError

    try:
        # Not standalone: Typer then raises its errors here instead of printing usage blocks.
        code = app(standalone_mode=False, prog_name=PROG)
    except SightQLError as exc:
        _refuse(str(exc))  # DuckDB's messages can run over lines ("Did you mean ..."): one line here
    except (KeyboardInterrupt, typer.Abort):
        _interrupted()
    except typer.TyperException as exc:
        # Typer vendors click (typer._click), so click's own classes never match; every parse
        # error Typer raises (missing argument, unknown option or command, bad value, missing
        # file) derives from TyperException.
        _refuse(usage_sentence(exc))
    # A command that ran to its end returns None; typer.Exit(code), --help and --version return their
    # code; Typer turns Ctrl+C inside a command into Exit(130).
    if code == 130:
        _interrupted()
    if isinstance(code, int) and code:
        sys.exit(code)


def usage_sentence(exc: typer.TyperException) -> str:
    """One line from a Typer parse error, pointing at the help of the command it came from."""
    message = exc.format_message().replace(": Value error, ", ": ")  # Typer's coercion prefix
    if message[:1].isupper() and message[1:2].islower():
        message = message[0].lower() + message[1:]
    message = message.rstrip(".")
    ctx = getattr(exc, "ctx", None)
    return f"{message}; see {ctx.command_path} --help" if ctx is not None else message


def _refuse(sentence: str) -> NoReturn:
    line = " ".join(part.strip() for part in sentence.splitlines() if part.strip())
    print(f"error: {line}", file=sys.stderr)
    sys.exit(2)


def _interrupted() -> NoReturn:
    print("interrupted", file=sys.stderr)
    sys.exit(130)
