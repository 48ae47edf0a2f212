"""Kasisto "Snapshot API" 1.0.0: `GET /create_snap` answers PNG bytes, `POST /create_snap` answers
`{"file_url", "status"}` where `file_url` downloads the stored PNG.

Choices where the document is silent (docs/kasisto.md): a token is required, as `Authorization:
Bearer` or `?token=` (so an `<img src>` works); width and height default to 1280×800; `localmode` is
accepted and ignored; `file_url` is a signed link that works without a token until it expires;
errors are JSON `{"status": "error", "message": …}` with a 4xx/5xx status.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from snapshotd.errors import BadRequest, SnapshotdError
from snapshotd.http import openapi
from snapshotd.http.deps import (
    Credentials,
    ServicesDep,
    credentials,
    principal_from,
    public_base,
)
from snapshotd.http.native import capture_now
from snapshotd.http.native_files import artifact_response, link_life
from snapshotd.http.problems import error_headers
from snapshotd.services import downloads
from snapshotd.services.snapshots import parse_options
from snapshotd.store.models import Snapshot

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
]


def render_error(request: Request, error: SnapshotdError) -> Response:
    return JSONResponse(
        {"status": "error", "message": error.detail},
        status_code=error.status,
        headers=error_headers(error),
    )


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


async def _snap(request: Request, services: ServicesDep, fields: dict[str, Any]) -> Snapshot:
    presented = credentials(request, basic=False)
    if not presented.token:
        presented = Credentials(request.query_params.get("token", ""))
    principal = await asyncio.to_thread(principal_from, services, request, presented)
    principal.require("upload")
    options = parse_options(_options(fields))
    return await capture_now(services, principal, options, surface="kasisto")


@router.get(
    "/create_snap",
    summary="Capture a page and answer with the PNG",
    response_class=Response,
    responses={**openapi.answers(400, 403, 502), **openapi.files("image/png")},
    openapi_extra={"parameters": GET_PARAMETERS},
)
async def create_snap_get(request: Request, services: ServicesDep) -> Response:
    snapshot = await _snap(request, services, dict(request.query_params))
    return await asyncio.to_thread(
        artifact_response, request, services, snapshot.org_id, snapshot.id, "image"
    )


@router.post(
    "/create_snap",
    summary="Capture a page and answer with a link to the PNG",
    responses=openapi.answers(403, 502),
    openapi_extra=openapi.KASISTO_BODY,
)
async def create_snap_post(request: Request, services: ServicesDep) -> dict[str, str]:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        async with request.form() as form:
            fields: dict[str, Any] = {
                key: value for key, value in form.items() if isinstance(value, str)
            }
    elif content_type.startswith("application/json"):
        try:
            fields = json.loads(await request.body())
        except (ValueError, RecursionError):  # nested deeper than the parser goes
            raise BadRequest("the body is not valid JSON") from None
        if not isinstance(fields, dict):
            raise BadRequest("the JSON body must be an object")
    else:
        fields = dict(request.query_params)
    snapshot = await _snap(request, services, fields)
    expires, signature = await asyncio.to_thread(
        downloads.sign, services.db, snapshot, "image", lifetime=FILE_LINK_LIFETIME
    )
    base = public_base(request, services)
    file_url = f"{base}/create_snap/files/{snapshot.id}.png?expires={expires}&sig={signature}"
    return {"file_url": file_url, "status": "success"}


@router.get(
    "/create_snap/files/{name}",
    summary="Download a PNG named by a file_url",
    **openapi.signed_link("image/png"),
)
def create_snap_file(
    name: str, expires: int, sig: str, request: Request, services: ServicesDep
) -> Response:
    snapshot_id = name.removesuffix(".png")
    org_id = downloads.verify(services.db, snapshot_id, "image", expires, sig)
    return artifact_response(
        request, services, org_id, snapshot_id, "image", direct_for=link_life(expires)
    )
