"""What the ThousandEyes v6 and v7 surfaces share: the account-group context (`aid`), dates in the
forms their clients send, rate-limit headers, and v7's error bodies.

v7 errors are `application/problem+json` in the shapes the official SDK types strictly: 400
`ValidationError` (with `errors: [{code, field, message}]`), 401 `UnauthorizedError`
(`error`, `error_description`), anything else `Error` (`type`, `title`, `status`, `detail`,
`instance`). A 429 also carries `x-organization-rate-limit-limit`, `-remaining` and `-reset` (UTC
epoch seconds), which the SDK reads to wait before its one retry.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from snapshotd.errors import BadRequest, SnapshotdError
from snapshotd.http.deps import AppServices
from snapshotd.http.problems import error_headers
from snapshotd.services.accounts import Principal, account_group_for
from snapshotd.services.ratelimit import RateLimited
from snapshotd.services.synthetic import Scope

PROBLEM = "application/problem+json"
HAL = "application/hal+json"
_WINDOW = re.compile(r"^(\d{1,6})([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_WINDOW = timedelta(days=400)


def rate_limit_headers(error: SnapshotdError) -> dict[str, str]:
    if not isinstance(error, RateLimited):
        return {}
    decision = error.decision
    return {
        "x-organization-rate-limit-limit": str(decision.limit.count),
        "x-organization-rate-limit-remaining": str(decision.remaining),
        "x-organization-rate-limit-reset": str(int(time.time()) + decision.reset),
    }


def render_v7_error(request: Request, error: SnapshotdError) -> Response:
    headers = {**error_headers(error), **rate_limit_headers(error)}
    if error.status == 401:
        body: dict[str, Any] = {"error": "invalid_token", "error_description": error.detail}
        headers["WWW-Authenticate"] = 'Bearer realm="snapshotd", error="invalid_token"'
    else:
        body = {
            "type": "about:blank",
            "title": error.title,
            "status": error.status,
            "detail": error.detail,
            "instance": request.url.path,
        }
        if error.status == 400:
            body["errors"] = [
                {"code": "INVALID", "field": error.field or "", "message": error.detail}
            ]
    return JSONResponse(body, status_code=error.status, headers=headers, media_type=PROBLEM)


class HalJSON(JSONResponse):
    media_type = HAL


def hal(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=HAL)


def scope(services: AppServices, principal: Principal, aid: str | None) -> Scope:
    group = account_group_for(services.db, principal, aid)
    return Scope(principal.org_id, group.id)


def parse_date(value: str, field: str) -> datetime:
    """ISO 8601 as the SDK sends it (`2024-01-01T00:00:00.000000+0000`), with `Z` or an offset, or
    `yyyy-MM-dd HH:mm:ss` as curl users and v6 write it; no offset means UTC."""
    text = value.strip()
    if not text:
        raise BadRequest("is required", field=field)
    try:
        moment = datetime.fromisoformat(text.replace(" ", "T", 1) if " " in text else text)
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise BadRequest(
            f"{value!r} is not a date: use ISO 8601 such as 2024-01-31T12:00:00Z", field=field
        ) from None
    if not 1970 <= moment.year <= 9000:
        raise BadRequest(f"{value!r} is out of range", field=field)
    return moment


def parse_window(value: str) -> timedelta:
    match = _WINDOW.match(value.strip())
    if not match or int(match.group(1)) == 0:
        raise BadRequest("must be a number and a unit s, m, h, d or w, such as 12h", field="window")
    window = timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
    if window > MAX_WINDOW:
        raise BadRequest(f"must be at most {MAX_WINDOW.days} days", field="window")
    return window


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
