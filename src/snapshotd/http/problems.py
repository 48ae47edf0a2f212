"""Turning exceptions into responses: RFC 9457 problem+json for the native API, and a hook for each
dialect to render its own product's error shape. No stack trace ever reaches a client."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from snapshotd.errors import SnapshotdError

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
    message = first.get("msg", "invalid request")
    return (f"{field}: {message}" if field else message), field


_STATUS_ERRORS = {
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    413: "Payload too large",
    415: "Unsupported media type",
}


def install(app: FastAPI) -> None:
    setattr(app.state, RENDERERS_KEY, [])

    @app.exception_handler(SnapshotdError)
    async def _domain(request: Request, error: SnapshotdError) -> Response:
        return render(request, error)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> Response:
        detail, field = _describe_validation(error)
        failure = SnapshotdError(detail, field=field)
        failure.status, failure.title = 400, "Invalid request"
        return render(request, failure)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> Response:
        failure = SnapshotdError(str(error.detail))
        failure.status = error.status_code
        failure.title = _STATUS_ERRORS.get(error.status_code, "Error")
        return render(request, failure)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        failure = SnapshotdError("an internal error occurred; it has been logged")
        return render(request, failure)
