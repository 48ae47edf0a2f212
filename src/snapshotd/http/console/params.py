"""The console's numeric ids and page numbers, read from the address. Each is bounded before it
becomes an int, so no value reaches the database as a number its columns cannot hold."""

from __future__ import annotations

from snapshotd.errors import BadRequest, NotFound
from snapshotd.services.samples import MAX_WHOLE

MAX_PAGE = 100_000


def whole(value: str, most: int = MAX_WHOLE) -> int | None:
    """`value` as a whole number from 1 to `most`; None when it is anything else."""
    if not (value.isascii() and value.isdigit()) or len(value) > len(str(most)):
        return None
    number = int(value)
    return number if 0 < number <= most else None


def known_id(value: str, what: str) -> int:
    """A numeric id from the path: one that cannot exist is simply not found."""
    number = whole(value)
    if number is None:
        raise NotFound(f"no {what} {value[:40]}")
    return number


def page_number(value: str) -> int:
    if not value:
        return 1
    number = whole(value, MAX_PAGE)
    if number is None:
        raise BadRequest(f"page must be a whole number from 1 to {MAX_PAGE}", field="page")
    return number


def cursor(value: str, field: str) -> int:
    """A numeric `before` cursor; 0 when absent."""
    if not value:
        return 0
    number = whole(value)
    if number is None:
        raise BadRequest(f"{field} must be a whole number from 1 to {MAX_WHOLE}", field=field)
    return number
