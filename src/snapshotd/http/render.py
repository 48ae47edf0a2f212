"""Render links and the keys that sign them.

`GET /render/{key_id}/{format}?url=…&…&signature=HEX` answers a capture's picture without a token,
so it can sit in an `<img src>` or an `og:image` tag: the signature (services/render_keys.py)
stands in for the token, and the capture cache (services/capture_cache.py) answers repeats
without running Chromium. `HEAD` does the same without the bytes, which warms the cache.
`/api/v1/render-keys` manages an organization's keys (admin role).
"""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import Any, Literal
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from snapshotd.errors import BadRequest, CaptureFailed, Forbidden, Gone
from snapshotd.http import openapi
from snapshotd.http.artifacts import send_artifact
from snapshotd.http.deps import AdminDep, Services, ServicesDep, client_address
from snapshotd.services.capture_cache import CacheAsk
from snapshotd.services.capture_request import (
    FLAGS,
    CaptureRequest,
    fields_from_text,
    parse_request,
)
from snapshotd.services.ratelimit import Decision
from snapshotd.services.records import RenderKey
from snapshotd.services.render_keys import LiveKey, key_state, split_signed
from snapshotd.timestamps import iso

router = APIRouter(tags=["render links"])

Format = Literal["png", "jpeg", "webp", "pdf"]
ROLES = {"png": "image", "jpeg": "image", "webp": "image", "pdf": "pdf"}
LINK_PARAMETERS = [
    {
        "name": "expires",
        "in": "query",
        "schema": {"type": "integer", "description": "Unix seconds after which the link is 410"},
    },
    *openapi.CACHE_PARAMETERS,
    {
        "name": "signature",
        "in": "query",
        "required": True,
        "schema": {
            "type": "string",
            "description": "Lowercase hex HMAC-SHA256 of the query string before &signature=, "
            "keyed by the render key's secret; always the last parameter",
        },
    },
]


class RenderKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field("", max_length=200, description="What the key is for, e.g. the site.")
    rate_limit: str | None = Field(
        None,
        max_length=40,
        description="Requests this key may make per API process, COUNT/SECONDS (`0`: none); "
        "empty: SNAPSHOTD_RENDER_KEY_RATE_LIMIT.",
    )


def key_body(row: RenderKey) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "state": key_state(row),
        "rate_limit": row.rate_limit,
        "created_by": row.created_by,
        "created_at": iso(row.created_at),
        "last_used_at": iso(row.last_used_at),
        "revoked_at": iso(row.revoked_at),
        "href": f"/api/v1/render-keys/{row.id}",
    }


@router.get("/api/v1/render-keys", summary="The organization's render keys (never their secrets)")
def list_render_keys(principal: AdminDep, services: ServicesDep) -> dict[str, Any]:
    return {"items": [key_body(row) for row in services.render_keys.list(principal.org_id)]}


@router.post(
    "/api/v1/render-keys", status_code=201, summary="Create a render key; its secret is shown once"
)
def create_render_key(
    body: RenderKeyCreate, principal: AdminDep, services: ServicesDep, response: Response
) -> dict[str, Any]:
    issued = services.render_keys.create(
        principal.org_id, name=body.name, rate_limit=body.rate_limit, actor=principal.email
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Location"] = f"/api/v1/render-keys/{issued.row.id}"
    return {**key_body(issued.row), "secret": issued.secret}


@router.delete(
    "/api/v1/render-keys/{key_id}",
    status_code=204,
    summary="Revoke a render key: links signed with it answer 403",
)
def revoke_render_key(key_id: str, principal: AdminDep, services: ServicesDep) -> Response:
    services.render_keys.revoke(principal.org_id, key_id, actor=principal.email)
    return Response(status_code=204)


RENDER_ROUTE: dict[str, Any] = {
    "response_class": Response,
    "responses": {
        **openapi.answers(400, 403, 410, 429, 502),
        **openapi.files(*openapi.IMAGES, "application/pdf"),
    },
    "openapi_extra": {
        **openapi.PUBLIC,
        **openapi.query(
            CaptureRequest,
            exclude=("headers", "cookies", "format"),
            flags=FLAGS,
            text={"geolocation": "latitude,longitude or latitude,longitude,accuracy (metres)"},
            extra=LINK_PARAMETERS,
        ),
    },
}


@router.get(
    "/render/{key_id}/{format}",
    summary="A capture's picture through a signed link (no token): for <img src>",
    operation_id="render_link",
    **RENDER_ROUTE,
)
@router.head(
    "/render/{key_id}/{format}",
    summary="Warm the cache for a signed link: the answer's headers without the picture",
    operation_id="render_link_head",
    **RENDER_ROUTE,
)
async def render(key_id: str, format: Format, request: Request, services: ServicesDep) -> Response:
    key, signed = await _signer(request, services, key_id)
    decision = services.render_keys.take(key)
    options, ask = link_request(signed, format)
    got = await services.capture.capture(key.principal(), options, surface="render", cache=ask)
    role = ROLES[format]
    snapshot = got.snapshot
    artifact = next((each for each in snapshot.artifacts if each.role == role), None)
    if artifact is None:
        raise CaptureFailed(f"snapshot {snapshot.id} has no {role}")
    headers = picture_headers(snapshot.id, got.max_age(), got.header, decision)
    return await asyncio.to_thread(
        send_artifact,
        request,
        snapshot.id,
        artifact,
        partial(services.snapshots.open_blob, artifact.sha256),
        headers,
    )


def link_request(signed: bytes, format: str) -> tuple[CaptureRequest, CacheAsk]:
    """The capture a link's signed query asks for, and what it asks of the cache; Gone when its
    `expires` has passed, BadRequest for anything else wrong."""
    fields = fields_from_text(parse_qsl(signed.decode("latin-1"), keep_blank_values=True))
    _check_expiry(fields.pop("expires", None))
    ask = CacheAsk.from_text(fields)
    if "format" in fields:
        raise BadRequest("the format is the link's path (/render/KEY/FORMAT), not a parameter")
    return parse_request({**fields, "format": format}), ask


def picture_headers(
    snapshot_id: str, max_age: int, cache: str, decision: Decision | None
) -> dict[str, str]:
    """The headers of a render link's picture: public caching for as long as the capture would be
    reused, whether the cache answered, and the key's budget."""
    return {
        "Cache-Control": f"public, max-age={max_age}",
        "X-Cache": cache,
        "X-Snapshot-Id": snapshot_id,
        **(decision.headers() if decision is not None else {}),
    }


async def _signer(request: Request, services: Services, key_id: str) -> tuple[LiveKey, bytes]:
    """The live key whose signature the link carries, and the part of the query it signed. A
    link that fails takes one from the client address's miss budget, as an unknown share link
    does, so guessing is slow."""
    keys, address = services.render_keys, client_address(request)
    services.misses.check(address)
    try:
        signed, given = split_signed(request.scope["query_string"])
        known, found = keys.remembered(key_id)
        if not known:
            found = await asyncio.to_thread(keys.look_up, key_id)
        return keys.check(found, signed, given), signed
    except Forbidden:
        services.misses.take(address)
        raise


def _check_expiry(expires: object) -> None:
    if expires is None:
        return
    text = str(expires).strip()
    if not (text.isascii() and text.isdigit()):
        raise BadRequest("expires is a time in Unix seconds", field="expires")
    if int(text) < time.time():
        raise Gone("this render link has expired")
