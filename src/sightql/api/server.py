"""Run the API with uvicorn: refuse a non-loopback address without a token, warn when open on loopback."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import sightql
from sightql.api.auth import TOKEN_ENV, check_can_listen
from sightql.api.limits import ApiLimits
from sightql.config import default_home
from sightql.errors import ConfigError, WarehouseBusyError

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def run_server(home: str | Path | None, *, host: str, port: int, log_level: str = "info") -> None:
    import uvicorn

    from sightql.api import create_app

    if log_level not in LOG_LEVELS:
        raise ConfigError(f"log level {log_level!r} is not known; use one of {', '.join(LOG_LEVELS)}")
    token = os.environ.get(TOKEN_ENV) or None
    check_can_listen(host, token)
    limits = ApiLimits.from_env()
    folder = Path(home).expanduser() if home is not None else default_home()
    _check_warehouse(folder, limits)
    if token is None:
        print(f"warning: {TOKEN_ENV} is not set, so anyone on this machine can use the API on {host}:{port}",
              file=sys.stderr, flush=True)
    uvicorn.run(create_app(folder, token, limits), host=host, port=port, log_level=log_level)


def _check_warehouse(folder: Path, limits: ApiLimits) -> None:
    """Open and close the warehouse once, so a wrong path fails now; a busy one only warns."""
    try:
        sightql.connect(folder, lock_wait=limits.lock_wait).close()
    except WarehouseBusyError as exc:
        print(f"warning: {exc}; requests get 503 until it is free", file=sys.stderr, flush=True)
