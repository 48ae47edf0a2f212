"""Turning exceptions into responses: RFC 9457 problem+json for the native API, and a hook for each
dialect to render its own product's error shape. No stack trace ever reaches a client.

When the database, the blob store or the disk fails, every route answers 503 with Retry-After in
its surface's own shape, and the log gets one line per outage rather than a traceback per request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from snapshotd.errors import BadRequest, OutageLog, SnapshotdError, as_outage

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


def refused_value(error: Exception) -> bool:
    """The database refused a value itself (PostgreSQL takes no NUL in text, nor numbers out of
    a column's range; SQLite's driver refuses integers over 64 bits before sending them): the
    request's fault, not the server's."""
    from sqlalchemy import exc as sa

    if isinstance(error, OverflowError):
        return "SQLite INTEGER" in str(error)
    return isinstance(error, sa.DataError)


def outage_classes() -> list[type[Exception]]:
    """The exception classes that may stand for an outage (`as_outage` decides for each error):
    OS errors (a full disk), SQLAlchemy's (the database), and botocore's when S3 is in use."""
    from sqlalchemy import exc as sa

    classes: list[type[Exception]] = [OSError, sa.DBAPIError, sa.TimeoutError]
    try:
        from botocore import exceptions as boto
    except ImportError:  # blobs are kept in a folder; botocore is not installed
        return classes
    return [*classes, boto.BotoCoreError, boto.ClientError]
