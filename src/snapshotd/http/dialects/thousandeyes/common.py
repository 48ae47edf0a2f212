"""What the ThousandEyes v6 and v7 surfaces share: the account-group context (`aid`), time
windows, rate-limit headers, and v7's error bodies.

v7 errors are `application/problem+json` in the shapes the official SDK types strictly: 400
`ValidationError` (with `errors: [{code, field, message}]`), 401 `UnauthorizedError`
(`error`, `error_description`), anything else `Error` (`type`, `title`, `status`, `detail`,
`instance`). A 429 also carries `x-organization-rate-limit-limit`, `-remaining` and `-reset` (UTC
epoch seconds), which the SDK reads to wait before its one retry.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from snapshotd.errors import BadRequest, RateLimited, SnapshotdError
from snapshotd.http.deps import Services
from snapshotd.http.problems import error_headers
from snapshotd.services.accounts import Principal
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


def scope(services: Services, principal: Principal, aid: str | None) -> Scope:
    group = services.accounts.account_group_for(principal, aid)
    return Scope(principal.org_id, group.id)


def parse_window(value: str) -> timedelta:
    match = _WINDOW.match(value.strip())
    if not match or int(match.group(1)) == 0:
        raise BadRequest("must be a number and a unit s, m, h, d or w, such as 12h", field="window")
    window = timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
    if window > MAX_WINDOW:
        raise BadRequest(f"must be at most {MAX_WINDOW.days} days", field="window")
    return window
