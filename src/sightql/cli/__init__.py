"""The ``sightql`` command: thin commands over the library, each with examples in its help."""

from __future__ import annotations

import os
import sys

from sightql.cli.app import app


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
    from sightql.errors import SightQLError

    try:
        app(standalone_mode=False)
    except SightQLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # click's own usage errors
        import click

        if isinstance(exc, click.exceptions.Abort):
            sys.exit(130)
        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        raise
