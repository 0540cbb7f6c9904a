"""``build_app``: the FastAPI app serving one warehouse (use ``sightql.api.create_app``)."""

from __future__ import annotations

from pathlib import Path

from fastapi import Depends, FastAPI

import sightql
from sightql.api.auth import token_guard
from sightql.api.errors import install_error_handlers
from sightql.api.limits import ApiLimits, BodySizeLimit
from sightql.api.routes import health_router, router

DESCRIPTION = """Image recognition over HTTP, answered by the same code path as SQL `classify_topk`.

Send `Authorization: Bearer <$SIGHTQL_API_TOKEN>` with every /v1 request. Errors are
`{"detail": "<one sentence>"}`. See docs/api.md."""


def build_app(home: Path, token: str | None, limits: ApiLimits) -> FastAPI:
    app = FastAPI(title="SightQL", version=sightql.__version__, description=DESCRIPTION)
    app.state.home = home
    app.state.limits = limits
    app.include_router(health_router)
    app.include_router(router, dependencies=[Depends(token_guard(token))])
    install_error_handlers(app, limits)
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_request_bytes)
    return app
