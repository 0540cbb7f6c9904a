"""The images of a predict request: multipart files, or base64 in JSON; each readable or with its error.

Read only after the token was checked: then the declared Content-Length is checked, and the body
is counted as it streams in (see limits.py). A problem with one image (bad base64, too large)
stays with that image, so the others in a batch still get answers.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from fastapi import HTTPException, Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from sightql.api.limits import ApiLimits, too_large_message
from sightql.api.schemas import PredictJson

JSON_EXAMPLE = '{"image": "<base64>"} or {"images": ["<base64>", ...]}'


@dataclass
class Upload:
    """One image of the request: its bytes, or why there are none."""

    name: str
    data: bytes | None
    error: str | None = None
    status: int = 422  # the answer when a request of this one image cannot be used


async def read_uploads(request: Request) -> list[Upload]:
    """The request's images, in order; raises 413/415/422 for a request that carries none usable."""
    limits: ApiLimits = request.app.state.limits
    check_declared_length(request.headers.get("content-length"), limits.max_request_bytes)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        uploads = await _from_multipart(request, limits)
    elif media == "application/json" or media.endswith("+json"):
        uploads = _from_json(await request.body())
    else:
        raise HTTPException(
            415,
            f"{f'content type {media!r} is' if media else 'a body without a content type is'} not accepted; "
            "send multipart/form-data with image files, "
            f"or application/json as {JSON_EXAMPLE}",
        )
    if not uploads:
        raise HTTPException(422, f"the request has no image; send files as multipart/form-data, or JSON as {JSON_EXAMPLE}")
    if len(uploads) > limits.max_images:
        raise _too_many_images(str(len(uploads)), limits.max_images)
    for upload in uploads:
        if upload.data is not None and len(upload.data) > limits.max_image_bytes:
            upload.error = (
                f"{len(upload.data):,} bytes, over the {limits.max_image_bytes:,}-byte limit per image "
                "(the server's SIGHTQL_MAX_IMAGE_BYTES)"
            )
            upload.data, upload.status = None, 413
    return uploads


def check_declared_length(header: str | None, max_bytes: int) -> None:
    """413 for a declared Content-Length over the limit, before any byte of the body is read."""
    try:
        declared = int(header) if header is not None else None
    except ValueError:
        return
    if declared is not None and declared > max_bytes:
        raise HTTPException(413, too_large_message(max_bytes, declared))


def _too_many_images(count: str, limit: int) -> HTTPException:
    return HTTPException(
        413,
        f"the request has {count} images, over the limit of {limit} per request; "
        "split it, or start the server with a larger SIGHTQL_API_MAX_IMAGES",
    )


async def _from_multipart(request: Request, limits: ApiLimits) -> list[Upload]:
    # The parser stops at one part past the limit, so a request of many tiny parts is never
    # held whole. Starlette reports any parser refusal as a 400 whose text alone says which
    # limit was hit: "Too many files. ..." / "Too many fields. ...".
    try:
        form = await request.form(max_files=limits.max_images + 1, max_fields=limits.max_images + 1)
    except StarletteHTTPException as exc:
        if exc.status_code == 400 and str(exc.detail).startswith("Too many"):
            raise _too_many_images(f"more than {limits.max_images}", limits.max_images) from None
        raise HTTPException(
            400, f"the multipart body cannot be read ({exc.detail}); send image files as multipart/form-data"
        ) from None
    try:
        uploads = []
        for field, value in form.multi_items():
            if isinstance(value, UploadFile):
                uploads.append(Upload(value.filename or f"{field}[{len(uploads)}]", await value.read()))
        return uploads
    finally:
        await form.close()


def _from_json(body: bytes) -> list[Upload]:
    try:
        parsed = PredictJson.model_validate_json(body)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise HTTPException(
            422, f"the JSON body is not {JSON_EXAMPLE}: {where + ': ' if where else ''}{problem['msg']}"
        ) from None
    if (parsed.image is None) == (parsed.images is None):
        raise HTTPException(422, f"give exactly one of 'image' or 'images' in the JSON body: {JSON_EXAMPLE}")
    if parsed.image is not None:
        return [_decode_base64("image", parsed.image)]
    return [_decode_base64(f"images[{i}]", text) for i, text in enumerate(parsed.images or [])]


def _decode_base64(name: str, text: str) -> Upload:
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]  # a data URL: data:image/png;base64,....
    text = "".join(text.split())  # `base64 FILE` wraps its output at 76 columns
    try:
        return Upload(name, base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError) as exc:
        return Upload(name, None, f"not valid base64 ({exc}); encode the image file's bytes with standard base64")
