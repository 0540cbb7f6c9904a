"""The endpoints. Each opens the warehouse for its request only and closes it straight after,
so a CLI job and the API take turns on one warehouse; a ``def`` endpoint runs in the threadpool."""

from __future__ import annotations

from typing import Any, ContextManager

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request

import sightql
from sightql.api.inputs import Upload, read_uploads
from sightql.api.schemas import ErrorBody, Health, ModelList, PredictJson, PredictResponse

router = APIRouter(prefix="/v1")
health_router = APIRouter()

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No token, or the wrong one."},
    503: {"model": ErrorBody, "description": "Another process held the warehouse past the lock wait; see Retry-After."},
}
_PREDICT_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    404: {"model": ErrorBody, "description": "No model answers to this reference."},
    413: {"model": ErrorBody, "description": "The request, or its only image, is over a size limit."},
    415: {"model": ErrorBody, "description": "Neither multipart/form-data nor JSON."},
    422: {"model": ErrorBody, "description": "A request of one image that is not a usable image, or a malformed request."},
}
_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                    "required": ["files"],
                }
            },
            "application/json": {"schema": PredictJson.model_json_schema()},
        },
    }
}


def _open_warehouse(request: Request) -> ContextManager[sightql.Session]:
    """This request's session; within the lock wait, other requests' sessions and other processes
    take turns with it (see sightql.sql.process_turns), then WarehouseBusyError (a 503)."""
    return sightql.connect(request.app.state.home, lock_wait=request.app.state.limits.lock_wait)


@health_router.get("/healthz", response_model=Health, tags=["health"])
def healthz() -> Health:
    """Whether the server is up (no token needed; does not open the warehouse)."""
    return Health(status="ok", version=sightql.__version__)


@router.get("/models", response_model=ModelList, response_model_exclude_none=True, responses=_ERRORS, tags=["models"])
def list_models(request: Request) -> ModelList:
    """The built-in models, then the registry's models with their versions and aliases."""
    with _open_warehouse(request) as session:
        return ModelList.model_validate({"models": session.models()})


@router.post(
    "/models/{ref}/predict", response_model=PredictResponse, responses=_PREDICT_ERRORS, openapi_extra=_PREDICT_BODY,
    tags=["models"],
)
def predict(
    request: Request,
    ref: str = Path(description="'imagenet', 'name', 'name@v3' or 'name@prod' ('@' may be sent as %40)."),
    k: int = Query(5, ge=1, le=1000, description="How many labels per image."),
    uploads: list[Upload] = Depends(read_uploads),
) -> PredictResponse:
    """The top-k labels of each image, by the same path as SQL ``classify_topk(ref, image, k)``.

    Send image files as multipart/form-data (any field name, repeatable), or JSON
    ``{"image": "<base64>"}`` / ``{"images": ["<base64>", ...]}``. In a batch a bad image gets
    its own ``error`` and the rest are answered; a request of one image that cannot be used is a 422.
    """
    if len(uploads) == 1 and uploads[0].error:
        raise HTTPException(uploads[0].status, f"{uploads[0].name}: {uploads[0].error}")
    readable = [upload.data for upload in uploads if upload.data is not None]
    with _open_warehouse(request) as session:
        answers = iter(session.classify(readable, model=ref, k=k))
    predictions = [
        {"index": index, "name": upload.name,
         **(next(answers) if upload.data is not None else {"top": None, "error": upload.error, "model_version": None})}
        for index, upload in enumerate(uploads)
    ]
    if len(predictions) == 1 and predictions[0]["error"]:
        raise HTTPException(422, f"{predictions[0]['name']}: {predictions[0]['error']}")
    version = next((p["model_version"] for p in predictions if p["model_version"]), None)
    return PredictResponse.model_validate({"model": ref, "model_version": version, "k": k, "predictions": predictions})
