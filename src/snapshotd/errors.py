"""The errors snapshotd's services and engines raise, each class carrying the HTTP status that
every surface answers it with.

    SnapshotdError (500)
    ├── BadRequest (400)
    │   ├── InvalidRequest — the request does not have the shape its route takes
    │   ├── InvalidURL
    │   ├── EgressDenied
    │   └── InvalidValue — breaks one of `snapshotd.rules`; also a ValueError
    ├── Unauthorized (401)
    ├── Forbidden (403)
    ├── NotFound (404)
    ├── MethodNotAllowed (405)
    ├── NotAcceptable (406)
    ├── Conflict (409)
    ├── Gone (410)
    ├── PayloadTooLarge (413)
    ├── UnsupportedMediaType (415)
    ├── RangeNotSatisfiable (416)
    ├── Unprocessable (422)
    ├── TooManyRequests (429)
    │   └── RateLimited — a rate limit ran out; `decision` says which one
    ├── CaptureFailed (502) — the page could not be captured; the message says why
    └── ServiceUnavailable (503)
        ├── Outage — a part snapshotd depends on is out of reach for now
        │   ├── DatabaseUnavailable
        │   ├── BlobStoreUnavailable
        │   └── DiskFull
        └── ArtifactsNotStored — a capture could not be stored because of an Outage

Each HTTP surface renders these in its own error shape, and the CLI prints the message. Anything
else reaching a client is a plain 500, except what `snapshotd.store.outages.as_outage` recognises
as an outage of the database, the blob store or the disk: that is answered 503 with Retry-After,
because the request will work again once the part is back.

This module imports nothing, so that every layer, settings included, can raise these.
"""

from __future__ import annotations

from typing import ClassVar, Protocol


class SnapshotdError(Exception):
    status: ClassVar[int] = 500
    title = "Internal error"

    def __init__(
        self,
        detail: str,
        *,
        retry_after: int | None = None,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        title: str | None = None,
    ):
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after
        self.field = field
        self.headers = headers or {}
        if title is not None:  # a surface's own wording; the status stays the class's
            self.title = title


class BadRequest(SnapshotdError):
    status = 400
    title = "Bad request"


class InvalidRequest(BadRequest):
    title = "Invalid request"


class InvalidURL(BadRequest):
    title = "Invalid URL"


class EgressDenied(BadRequest):
    title = "Destination not allowed"

    @property
    def unresolved(self) -> bool:
        """The name did not resolve, rather than resolving to an address the policy refuses:
        a probe reports the first as a `DNS` error and the second as `Egress`."""
        return self.__cause__ is not None or self.detail.startswith("could not resolve")


class InvalidValue(BadRequest, ValueError):
    """A value that breaks one of `snapshotd.rules`: a 400 when a client sent it, and a
    ValueError so that settings validation names the variable when an operator did."""


class Unauthorized(SnapshotdError):
    status = 401
    title = "Unauthorized"


class Forbidden(SnapshotdError):
    status = 403
    title = "Forbidden"


class NotFound(SnapshotdError):
    status = 404
    title = "Not found"


class MethodNotAllowed(SnapshotdError):
    status = 405
    title = "Method not allowed"


class NotAcceptable(SnapshotdError):
    status = 406
    title = "Not acceptable"


class Conflict(SnapshotdError):
    status = 409
    title = "Conflict"


class Gone(SnapshotdError):
    status = 410
    title = "Gone"


class PayloadTooLarge(SnapshotdError):
    status = 413
    title = "Payload too large"


class UnsupportedMediaType(SnapshotdError):
    status = 415
    title = "Unsupported media type"


class RangeNotSatisfiable(SnapshotdError):
    status = 416
    title = "Range not satisfiable"


class Unprocessable(SnapshotdError):
    status = 422
    title = "Unprocessable content"


class TooManyRequests(SnapshotdError):
    status = 429
    title = "Too many requests"


class _Quota(Protocol):
    @property
    def count(self) -> int: ...

    @property
    def seconds(self) -> int: ...


class RateDecision(Protocol):
    """What a rate limiter decided (`snapshotd.services.ratelimit.Decision`)."""

    @property
    def policy(self) -> str: ...

    @property
    def limit(self) -> _Quota: ...

    @property
    def remaining(self) -> int: ...

    @property
    def reset(self) -> int: ...

    def headers(self) -> dict[str, str]: ...


class RateLimited(TooManyRequests):
    """429 carrying the decision, so a dialect can add its own product's headers."""

    def __init__(self, detail: str, decision: RateDecision) -> None:
        super().__init__(detail, retry_after=max(1, decision.reset), headers=decision.headers())
        self.decision = decision


class CaptureFailed(SnapshotdError):
    status = 502
    title = "Capture failed"


class ServiceUnavailable(SnapshotdError):
    status = 503
    title = "Service unavailable"


class Outage(ServiceUnavailable):
    """A part snapshotd depends on failed in a way that should pass: the request or job can be
    tried again. `detail` is for clients and names no host or path; `summary` says what went
    wrong in plain words, with the part's own message, for the log and a job's failure message."""

    component = "a service snapshotd depends on"

    def __init__(self, detail: str, *, summary: str, retry_after: int = 5) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.summary = summary


class DatabaseUnavailable(Outage):
    component = "the database"


class BlobStoreUnavailable(Outage):
    component = "the blob store"


class DiskFull(Outage):
    component = "the data folder"


class ArtifactsNotStored(ServiceUnavailable):
    """A capture's artifacts could not be written because of `outage` (the blob store, the disk);
    the worker tries the job again, and this message is what the job fails with in the end."""

    def __init__(self, outage: Outage) -> None:
        super().__init__(
            f"could not store the artifacts: {outage.summary}", retry_after=outage.retry_after
        )
        self.outage = outage
