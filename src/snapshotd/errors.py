"""The exceptions snapshotd raises, each carrying the HTTP status a surface answers with.

    SnapshotdError
    ├── BadRequest (400)
    │   ├── InvalidURL
    │   └── EgressDenied
    ├── Unauthorized (401)
    ├── Forbidden (403)
    ├── NotFound (404)
    ├── MethodNotAllowed (405)
    ├── Conflict (409)
    ├── Gone (410)
    ├── PayloadTooLarge (413)
    ├── Unprocessable (422)
    ├── TooManyRequests (429)
    ├── ServiceUnavailable (503)
    │   ├── Outage — a part snapshotd depends on is out of reach for now
    │   │   ├── DatabaseUnavailable
    │   │   ├── BlobStoreUnavailable
    │   │   └── DiskFull
    │   └── ArtifactsNotStored — a capture could not be stored because of an Outage
    └── CaptureFailed (502) — the page could not be captured; the message says why

Engines and services raise these; each HTTP surface renders them in its own error shape, and the
CLI prints the message. Nothing outside this tree reaches a client as anything but a plain 500,
except what `as_outage` recognises as an outage of the database, the blob store or the disk: that
is answered 503 with Retry-After, because the request will work again once the part is back.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import sys
import threading
import time
from types import ModuleType

from sqlalchemy import exc as sa


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


# SQLite primary result codes that describe the file or the machine, not the statement.
_SQLITE_TRANSIENT = {"SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_CANTOPEN"}
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def as_outage(error: BaseException) -> Outage | None:
    """The Outage that `error` (or an error it was raised from) stands for, or None when it is
    not one and so is a bug worth a traceback. A database or blob store that cannot be reached,
    and a full disk, are outages; a bad statement or a missing object is not."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        outage = _classify(current)
        if outage is not None:
            return outage
        # Followed as a traceback would show it: `raise ... from None` hides the context.
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    return None


def _classify(error: BaseException) -> Outage | None:
    if isinstance(error, Outage):
        return error
    if isinstance(error, OSError) and error.errno in _DISK_FULL:
        return DiskFull(
            "the server's disk is full; try again later",
            summary="no space left on device",
            retry_after=30,
        )
    if isinstance(error, sa.DBAPIError):
        cause = error.orig if error.orig is not None else error
        return _database(cause, invalidated=error.connection_invalidated)
    if isinstance(error, sa.TimeoutError):
        return DatabaseUnavailable(
            "the database is too busy right now; try again shortly",
            summary=f"the database is busy ({_first_line(error)})",
        )
    return _database(error, invalidated=False) or _blob_store(error)


def _database(error: BaseException, *, invalidated: bool) -> Outage | None:
    """`error` as the driver raised it (SQLite's or psycopg's), unwrapped from SQLAlchemy's."""
    if isinstance(error, sqlite3.Error):
        name = error.sqlite_errorname
        if name.startswith("SQLITE_FULL"):
            return DatabaseUnavailable(
                "the server's disk is full; try again later",
                summary="the database cannot be written: no space left on device",
                retry_after=30,
            )
        if not any(name.startswith(code) for code in _SQLITE_TRANSIENT):
            return None
    else:
        psycopg = _loaded("psycopg")
        down = psycopg is not None and isinstance(
            error, psycopg.OperationalError | psycopg.InterfaceError
        )
        if not (invalidated or down):
            return None
    return DatabaseUnavailable(
        "the database cannot be reached right now; try again shortly",
        summary=f"the database is unreachable ({_first_line(error)})",
    )


def _blob_store(error: BaseException) -> Outage | None:
    botocore = _loaded("botocore.exceptions")
    if botocore is None:
        return None
    if isinstance(error, botocore.ConnectionError | botocore.HTTPClientError):
        problem = "unreachable"
    elif isinstance(error, botocore.ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if not isinstance(status, int) or status < 500:
            return None
        problem = "failing"
    else:
        return None
    return BlobStoreUnavailable(
        "the blob store cannot be reached right now; try again shortly",
        summary=f"the blob store is {problem} ({_first_line(error)})",
    )


def _loaded(module: str) -> ModuleType | None:
    """An optional dependency's module if something imported it: an error of a library that was
    never imported cannot have been raised, and importing it here would slow every command."""
    return sys.modules.get(module)


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


class OutageLog:
    """Logs each outage once when it starts, a reminder at most every `every` seconds while it
    lasts, and once when it ends. A part that is down fails every request and every poll; a
    traceback for each would bury the one line an operator needs. `then` says what happens
    meanwhile, e.g. "will try again"."""

    def __init__(self, logger: logging.Logger, *, then: str, every: float = 60.0) -> None:
        self._log = logger
        self._then = then
        self._every = every
        self._lock = threading.Lock()
        # component -> (when it was last logged, when it last failed, failures not logged)
        self._open: dict[str, tuple[float, float, int]] = {}

    def failed(self, outage: Outage, doing: str) -> None:
        """Records that `doing` (e.g. "claiming jobs") failed because of `outage`."""
        now = time.monotonic()
        with self._lock:
            known = self._open.get(outage.component)
            new = known is None or now - known[1] > self._every
            if known is not None and not new and now - known[0] < self._every:
                self._open[outage.component] = (known[0], now, known[2] + 1)
                return
            quiet = 0 if known is None else known[2]
            self._open[outage.component] = (now, now, 0)
        if new:
            self._log.warning("%s, while %s; %s", outage.summary, doing, self._then)
        else:
            self._log.warning(
                "%s still: %d more failures, the latest while %s; %s",
                outage.summary,
                quiet + 1,
                doing,
                self._then,
            )

    def recovered(self, *outages: type[Outage]) -> None:
        """Notes that the parts `outages` name work again, logging it for those that had not."""
        for kind in outages:
            with self._lock:
                was = self._open.pop(kind.component, None)
            if was is not None:
                self._log.info("%s works again", kind.component)
