"""Telling an outage from a bug: which failures of the database, the blob store or the disk are
parts out of reach for now (answered 503 with Retry-After, a job tried again), and which are
errors worth a traceback. Only this module knows the drivers' exception classes.
"""

from __future__ import annotations

import errno
import sqlite3
import sys
from types import ModuleType

from sqlalchemy import exc as sa

from snapshotd.errors import BlobStoreUnavailable, DatabaseUnavailable, DiskFull, Outage

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


def outage_classes() -> list[type[Exception]]:
    """The exception classes that may stand for an outage (`as_outage` decides for each error):
    OS errors (a full disk), SQLAlchemy's (the database), and botocore's when S3 is in use."""
    classes: list[type[Exception]] = [OSError, sa.DBAPIError, sa.TimeoutError]
    try:
        from botocore import exceptions as boto
    except ImportError:  # blobs are kept in a folder; botocore is not installed
        return classes
    return [*classes, boto.BotoCoreError, boto.ClientError]


def refused_value(error: Exception) -> bool:
    """The database refused a value itself (PostgreSQL takes no NUL in text, nor numbers out of
    a column's range; SQLite's driver refuses integers over 64 bits before sending them): the
    request's fault, not the server's."""
    if isinstance(error, OverflowError):
        return "SQLite INTEGER" in str(error)
    return isinstance(error, sa.DataError)
