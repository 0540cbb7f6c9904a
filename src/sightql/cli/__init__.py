"""The ``sightql`` command: thin commands over the library, each with examples in its help."""

from __future__ import annotations

import sys

from sightql.cli.app import app


def main() -> None:
    """Entry point: a user's mistake is one sentence on stderr and exit code 2, never a trace."""
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
