"""The exceptions snapshotd raises, each carrying the HTTP status a surface answers with.

    SnapshotdError
    ├── BadRequest (400)
    │   ├── InvalidURL
    │   └── EgressDenied
    ├── Unauthorized (401)
    ├── Forbidden (403)
    ├── NotFound (404)
    ├── Conflict (409)
    ├── Gone (410)
    ├── PayloadTooLarge (413)
    ├── Unprocessable (422)
    ├── TooManyRequests (429)
    ├── ServiceUnavailable (503)
    └── CaptureFailed (502) — the page could not be captured; the message says why

Engines and services raise these; each HTTP surface renders them in its own error shape, and the
CLI prints the message. Nothing outside this tree reaches a client as anything but a plain 500.
"""

from __future__ import annotations


class SnapshotdError(Exception):
    status = 500
    title = "Internal error"

    def __init__(
        self,
        detail: str,
        *,
        retry_after: int | None = None,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after
        self.field = field
        self.headers = headers or {}


class BadRequest(SnapshotdError):
    status = 400
    title = "Bad request"


class InvalidURL(BadRequest):
    title = "Invalid URL"


class EgressDenied(BadRequest):
    title = "Destination not allowed"


class Unauthorized(SnapshotdError):
    status = 401
    title = "Unauthorized"


class Forbidden(SnapshotdError):
    status = 403
    title = "Forbidden"


class NotFound(SnapshotdError):
    status = 404
    title = "Not found"


class Conflict(SnapshotdError):
    status = 409
    title = "Conflict"


class Gone(SnapshotdError):
    status = 410
    title = "Gone"


class PayloadTooLarge(SnapshotdError):
    status = 413
    title = "Payload too large"


class Unprocessable(SnapshotdError):
    status = 422
    title = "Unprocessable content"


class TooManyRequests(SnapshotdError):
    status = 429
    title = "Too many requests"


class ServiceUnavailable(SnapshotdError):
    status = 503
    title = "Service unavailable"


class CaptureFailed(SnapshotdError):
    status = 502
    title = "Capture failed"
