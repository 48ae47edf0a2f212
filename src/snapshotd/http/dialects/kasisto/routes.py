"""Kasisto "Snapshot API" 1.0.0: `GET /create_snap` answers PNG bytes, `POST /create_snap` answers
`{"file_url", "status"}` where `file_url` downloads the stored PNG.

Choices where the document is silent (docs/kasisto.md): a token is required, as `Authorization:
Bearer` or `?token=` (so an `<img src>` works); width and height default to 1280×800; `localmode` is
accepted and ignored; `file_url` is a signed link that works without a token until it expires;
errors are JSON `{"status": "error", "message": …}` with a 4xx/5xx status.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from snapshotd.errors import BadRequest, SnapshotdError
from snapshotd.http import openapi
from snapshotd.http.artifacts import artifact_response
from snapshotd.http.deps import Credentials, Services, ServicesDep, credentials, public_base
from snapshotd.http.problems import error_headers
from snapshotd.http.wire import add_signed_download, json_object, principal_factory
from snapshotd.services.accounts import Principal
from snapshotd.services.capture_cache import CacheAsk, Cached
from snapshotd.services.capture_request import parse_request

router = APIRouter(tags=["kasisto"])

FILE_LINK_LIFETIME = 7 * 24 * 3600
_PIXELS = {"type": "integer", "minimum": 100, "maximum": 16384}
GET_PARAMETERS = [
    {
        "name": "url",
        "in": "query",
        "required": True,
        "schema": {"type": "string", "examples": ["https://example.org/"]},
    },
    {"name": "width", "in": "query", "schema": _PIXELS},
    {"name": "height", "in": "query", "schema": _PIXELS},
    {"name": "token", "in": "query", "schema": {"type": "string"}},
    {"name": "localmode", "in": "query", "schema": {"type": "string"}},
    *openapi.CACHE_PARAMETERS,
]


def render_error(request: Request, error: SnapshotdError) -> Response:
    return JSONResponse(
        {"status": "error", "message": error.detail},
        status_code=error.status,
        headers=error_headers(error),
    )


def _presented(request: Request) -> Credentials:
    """A Bearer header, else `?token=`: an `<img src>` cannot send headers."""
    presented = credentials(request, basic=False)
    if presented.token:
        return presented
    return Credentials(request.query_params.get("token", ""))


requires = principal_factory(_presented)
Uploader = Annotated[Principal, Depends(requires("upload"))]


def _options(fields: dict[str, Any]) -> dict[str, Any]:
    url = str(fields.get("url") or "").strip()
    if not url:
        raise BadRequest("url is required", field="url")
    options: dict[str, Any] = {"url": url, "evidence": False}
    for name in ("width", "height"):
        value = str(fields.get(name) or "").strip()
        if value:
            if not (value.isascii() and value.isdigit()):
                raise BadRequest(f"{name} must be a whole number of pixels", field=name)
            options[name] = int(value)
    return options


async def _snap(services: Services, principal: Principal, fields: dict[str, Any]) -> Cached:
    """The capture, through the capture cache: `cache_ttl` and `force` are snapshotd's own
    additions to the document's fields."""
    ask = CacheAsk.from_text(fields)
    options = parse_request(_options(fields))
    return await services.capture.capture(principal, options, surface="kasisto", cache=ask)


@router.get(
    "/create_snap",
    summary="Capture a page and answer with the PNG",
    response_class=Response,
    responses={**openapi.answers(400, 502), **openapi.files("image/png")},
    openapi_extra={"parameters": GET_PARAMETERS},
)
async def create_snap_get(request: Request, services: ServicesDep, principal: Uploader) -> Response:
    got = await _snap(services, principal, dict(request.query_params))
    response = await asyncio.to_thread(
        artifact_response, request, services, got.snapshot.org_id, got.snapshot.id, "image"
    )
    response.headers["X-Cache"] = got.header
    return response


@router.post(
    "/create_snap",
    summary="Capture a page and answer with a link to the PNG",
    responses=openapi.answers(502),
    openapi_extra=openapi.KASISTO_BODY,
)
async def create_snap_post(
    request: Request, services: ServicesDep, principal: Uploader, response: Response
) -> dict[str, str]:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        async with request.form() as form:
            fields: dict[str, Any] = {
                key: value for key, value in form.items() if isinstance(value, str)
            }
    elif content_type.startswith("application/json"):
        fields = await json_object(request)
    else:
        fields = dict(request.query_params)
    got = await _snap(services, principal, fields)
    snapshot = got.snapshot
    response.headers["X-Cache"] = got.header
    expires, signature = await asyncio.to_thread(
        services.downloads.sign, snapshot, "image", lifetime=FILE_LINK_LIFETIME
    )
    base = public_base(request, services)
    file_url = f"{base}/create_snap/files/{snapshot.id}.png?expires={expires}&sig={signature}"
    return {"file_url": file_url, "status": "success"}


add_signed_download(
    router,
    "/create_snap/files/{snapshot_id}",
    summary="Download a PNG named by a file_url",
    suffix=".png",
    **openapi.signed_link("image/png"),
)
