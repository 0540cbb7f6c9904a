"""SightQL's HTTP API (``sightql serve``): predict over HTTP with the same path as SQL ``classify_topk``.

FastAPI is imported only when an app is built, so ``import sightql`` stays light; without the
``api`` extra, building one raises a MissingDependencyError naming ``pip install 'sightql[api]'``.
See docs/api.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sightql.api.limits import ApiLimits

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["ApiLimits", "create_app", "serve"]


def require_api_dependencies() -> None:
    """Raise MissingDependencyError unless FastAPI, uvicorn and python-multipart can be imported."""
    from sightql.errors import MissingDependencyError

    from importlib.util import find_spec

    for modules, package in ((("fastapi",), "fastapi"), (("uvicorn",), "uvicorn"),
                             (("python_multipart", "multipart"), "python-multipart")):
        if not any(_importable(module, find_spec) for module in modules):
            raise MissingDependencyError(package, "api")


def _importable(module: str, find_spec: Any) -> bool:
    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: sys.modules holds None for it
        return False


def create_app(home: str | Path, token: str | None, limits: ApiLimits | None = None) -> "FastAPI":
    """The ASGI app serving the warehouse at ``home``; ``token`` None or '' leaves it open (loopback only)."""
    require_api_dependencies()
    from sightql.api.app import build_app

    return build_app(Path(home).expanduser(), token or None, limits or ApiLimits.from_env())


def serve(home: str | Path | None = None, *, host: str = "127.0.0.1", port: int = 8000, **kwargs: Any) -> None:
    """Run the API with uvicorn until stopped; the token comes from ``$SIGHTQL_API_TOKEN``."""
    require_api_dependencies()
    from sightql.api.server import run_server

    run_server(home, host=host, port=port, **kwargs)
