"""SightQL errors -> HTTP status codes, each answered as ``{"detail": "<one sentence>"}``."""

from __future__ import annotations

import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from sightql.api.limits import ApiLimits
from sightql.errors import (
    ArtifactIntegrityError,
    MissingDependencyError,
    ModelNotFoundError,
    SightQLError,
    UnsafeModelError,
    WarehouseBusyError,
    WarehouseError,
)

# First match wins; any other SightQLError is a mistake in the request: 422.
STATUS_OF: tuple[tuple[type[SightQLError], int], ...] = (
    (ModelNotFoundError, 404),
    (WarehouseBusyError, 503),
    # The server's own state, which the client cannot fix:
    (WarehouseError, 500),
    (ArtifactIntegrityError, 500),
    (UnsafeModelError, 500),
    (MissingDependencyError, 500),
)


def status_of(error: SightQLError) -> int:
    return next((status for kind, status in STATUS_OF if isinstance(error, kind)), 422)


def install_error_handlers(app: FastAPI, limits: ApiLimits) -> None:
    retry_after = str(max(1, math.ceil(limits.lock_wait)))

    @app.exception_handler(SightQLError)
    async def sightql_error(request: Request, exc: SightQLError) -> JSONResponse:
        headers = {"Retry-After": retry_after} if isinstance(exc, WarehouseBusyError) else None
        return JSONResponse({"detail": str(exc)}, status_code=status_of(exc), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"detail": "; ".join(problems)}, status_code=422)
