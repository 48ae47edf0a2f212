"""Turning exceptions into responses: RFC 9457 problem+json for the native API, and a hook for each
dialect to render its own product's error shape. No stack trace ever reaches a client.

When the database, the blob store or the disk fails, every route answers 503 with Retry-After in
its surface's own shape, and the log gets one line per outage rather than a traceback per request.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from snapshotd.errors import (
    BadRequest,
    InvalidRequest,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    PayloadTooLarge,
    SnapshotdError,
    UnsupportedMediaType,
)
from snapshotd.outage_log import OutageLog
from snapshotd.services.outages import as_outage, outage_classes, refused_value

log = logging.getLogger(__name__)

Renderer = Callable[[Request, SnapshotdError], Response]
RENDERERS_KEY = "error_renderers"


def problem(request: Request, error: SnapshotdError) -> Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "instance": request.url.path,
    }
    if error.field:
        body["field"] = error.field
    return JSONResponse(
        body,
        status_code=error.status,
        headers=error_headers(error),
        media_type="application/problem+json",
    )


def error_headers(error: SnapshotdError) -> dict[str, str]:
    headers = dict(error.headers)
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="snapshotd"'
    return headers


def register_renderer(app: FastAPI, prefix: str, renderer: Renderer) -> None:
    getattr(app.state, RENDERERS_KEY).append((prefix, renderer))


def render(request: Request, error: SnapshotdError) -> Response:
    for prefix, renderer in getattr(request.app.state, RENDERERS_KEY):
        if request.url.path.startswith(prefix):
            return renderer(request, error)
    return problem(request, error)


def _describe_validation(error: RequestValidationError) -> tuple[str, str | None]:
    first = error.errors()[0]
    where = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    field = ".".join(where) or None
    # pydantic prefixes a validator's own words with "Value error, "; the words say enough.
    message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
    return (f"{field}: {message}" if field else message), field


_STATUS_ERRORS: dict[int, type[SnapshotdError]] = {
    kind.status: kind
    for kind in (NotFound, MethodNotAllowed, NotAcceptable, PayloadTooLarge, UnsupportedMediaType)
}


def refusal(error: StarletteHTTPException, *, title: str | None = None) -> SnapshotdError:
    """The tree's error for a request the web framework refused itself (no such route, a body
    it could not parse), in the tree's own words unless a surface gives its `title`."""
    kind = _STATUS_ERRORS.get(error.status_code) or _status_class(error.status_code)
    return kind(str(error.detail), title=title)


@functools.cache
def _status_class(status: int) -> type[SnapshotdError]:
    # Statuses the tree does not name (the framework's 400 for a body it cannot parse) keep the
    # framework's status under a plain title.
    return type(f"Refused{status}", (SnapshotdError,), {"status": status, "title": "Error"})


def install(app: FastAPI) -> None:
    setattr(app.state, RENDERERS_KEY, [])

    @app.exception_handler(SnapshotdError)
    async def _domain(request: Request, error: SnapshotdError) -> Response:
        return render(request, error)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> Response:
        detail, field = _describe_validation(error)
        return render(request, InvalidRequest(detail, field=field))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> Response:
        return render(request, refusal(error))

    outages = OutageLog(log, then="answering 503 with Retry-After until it is back")

    async def _outage(request: Request, error: Exception) -> Response:
        outage = as_outage(error)
        if outage is None:
            if refused_value(error):
                return render(request, BadRequest("a value in the request cannot be stored"))
            raise error  # a bug: `_unexpected` logs it and answers 500
        outages.failed(outage, f"answering {request.method} {request.url.path}")
        return render(request, outage)

    # Starlette re-raises whatever reaches the `Exception` handler so that the server logs it
    # again; these classes are handled one level down, where an answer ends the matter.
    for kind in (*outage_classes(), OverflowError):
        app.add_exception_handler(kind, _outage)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        failure = SnapshotdError("an internal error occurred; it has been logged")
        return render(request, failure)
