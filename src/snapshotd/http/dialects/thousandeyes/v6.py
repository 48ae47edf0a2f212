"""ThousandEyes API v6 (`/v6`): `POST /v6/snapshot`, answering JSON or XML.

The format is chosen as v6 documents, first match wins: a `.json` / `.xml` suffix, then the
`Accept` header, then `?format=json|xml`; JSON by default. Authentication is HTTP Basic
`email:token` (or a Bearer token). `from` / `to` take `yyyy-MM-dd HH:mm:ss` or ISO 8601 (UTC when
no offset is given); `isPublic` 1 makes a public share link, 0 (the default) a saved event visible
inside the organization. Errors use the body ThousandEyes documents for its errors:
`{"timestamp", "httpStatus", "errors": [message], "path"}`, or the same as XML.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from http import HTTPStatus
from typing import Annotated, Any
from urllib.parse import parse_qsl
from xml.etree import ElementTree

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from snapshotd.errors import BadRequest, SnapshotdError
from snapshotd.http import openapi
from snapshotd.http.deps import ServicesDep, credentials, public_base
from snapshotd.http.dialects.thousandeyes.common import rate_limit_headers, scope
from snapshotd.http.problems import error_headers
from snapshotd.http.wire import parse_date, parse_json_object, principal_factory
from snapshotd.services.accounts import Principal
from snapshotd.services.test_windows import Frozen, Names

router = APIRouter(prefix="/v6", tags=["thousandeyes v6"])

_NAMES = Names(display_name="displayName", start="from", end="to")

requires = principal_factory(lambda request: credentials(request, basic=True))
Sharer = Annotated[Principal, Depends(requires("share"))]


def _format(request: Request) -> str:
    path = request.url.path
    if path.endswith(".xml"):
        return "xml"
    if path.endswith(".json"):
        return "json"
    accept = request.headers.get("accept", "")
    if "xml" in accept and "json" not in accept:
        return "xml"
    if "json" in accept:
        return "json"
    return "xml" if request.query_params.get("format", "").lower() == "xml" else "json"


def _xml(root: str, data: Any) -> bytes:
    def fill(element: ElementTree.Element, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                fill(ElementTree.SubElement(element, key), item)
        elif isinstance(value, list):
            for item in value:
                fill(ElementTree.SubElement(element, element.tag.rstrip("s") or "item"), item)
        elif value is not None:
            element.text = str(value).lower() if isinstance(value, bool) else str(value)

    top = ElementTree.Element(root)
    fill(top, data)
    return ElementTree.tostring(top, encoding="utf-8", xml_declaration=True)


class XMLResponse(Response):
    media_type = "text/xml"


def _answer(request: Request, body: dict[str, Any], status: int, headers: dict[str, str]):
    if _format(request) == "xml":
        return Response(
            _xml("data", body), status_code=status, headers=headers, media_type="text/xml"
        )
    return JSONResponse(body, status_code=status, headers=headers)


def render_error(request: Request, error: SnapshotdError) -> Response:
    headers = {**error_headers(error), **rate_limit_headers(error)}
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="snapshotd"'
    body = {
        "timestamp": int(time.time() * 1000),
        "httpStatus": HTTPStatus(error.status).name,
        "errors": [f"{error.field}: {error.detail}" if error.field else error.detail],
        "path": request.url.path,
    }
    return _answer(request, body, error.status, headers)


async def _fields(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    if raw.lstrip()[:1] in (b"{", b"") or "json" in request.headers.get("content-type", ""):
        return parse_json_object(raw)
    try:
        return dict(parse_qsl(raw.decode(), keep_blank_values=True))
    except UnicodeDecodeError:
        raise BadRequest("the body is neither JSON nor a form") from None


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _test_id(value: Any) -> int:
    text = str(value)
    if isinstance(value, bool) or not isinstance(value, int | str) or not _digits(text):
        raise BadRequest("is required: the id of the test to snapshot", field="testId")
    number = int(text)
    if number > 2**31 - 1:
        raise BadRequest("is not a test id", field="testId")
    return number


def _public(value: Any) -> bool:
    if value in (None, "", 0, "0", False):
        return False
    if value in (1, "1", True):
        return True
    raise BadRequest("must be 0 (saved event) or 1 (share link)", field="isPublic")


def link_body(frozen: Frozen, view_url: str, user_id: str) -> dict[str, Any]:
    test = frozen.test
    return {
        "displayName": test.name,
        "linkId": frozen.share.id,
        "testId": test.id,
        "sourceTestId": frozen.source.id,
        "startRoundId": test.start_round,
        "endRoundId": test.end_round,
        "roundId": test.end_round,
        "shareDate": frozen.share.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        # v6 user ids are integers; snapshotd's are strings, so a stable number stands in.
        "uid": zlib.crc32(user_id.encode()),
        "extraParams": "",
        "viewUrl": view_url,
    }


@router.post(
    "/snapshot",
    summary="Freeze a test's rounds in a window (JSON, or XML when Accept asks for it)",
    status_code=201,
    responses={201: {"content": {"text/xml": {}}}},
    openapi_extra=openapi.JSON_OR_FORM,
)
@router.post(
    "/snapshot.json",
    summary="Freeze a test's rounds in a window (JSON)",
    status_code=201,
    openapi_extra=openapi.JSON_OR_FORM,
)
@router.post(
    "/snapshot.xml",
    summary="Freeze a test's rounds in a window (XML)",
    status_code=201,
    response_class=XMLResponse,
    openapi_extra=openapi.JSON_OR_FORM,
)
async def create_snapshot(request: Request, services: ServicesDep, principal: Sharer) -> Response:
    body = await _fields(request)
    test_id = _test_id(body.get("testId"))
    dates = []
    for field in ("from", "to"):
        value = body.get(field)
        if not isinstance(value, str):
            raise BadRequest("is required: yyyy-MM-dd HH:mm:ss (UTC)", field=field)
        dates.append(parse_date(value, field))
    if dates[0] >= dates[1]:
        raise BadRequest("must be before to", field="from")
    where = await asyncio.to_thread(scope, services, principal, request.query_params.get("aid"))
    frozen = await asyncio.to_thread(
        services.test_windows.create,
        principal,
        where,
        test_id,
        display_name=body.get("displayName"),
        start=dates[0],
        end=dates[1],
        public=_public(body.get("isPublic")),
        surface="thousandeyes_v6",
        names=_NAMES,
    )
    view_url = f"{public_base(request, services)}/s/{frozen.share.id}"
    answer = {"link": link_body(frozen, view_url, principal.user_id), "test": []}
    return _answer(request, answer, 201, {})
