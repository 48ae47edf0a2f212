"""`GET /api/v1/snapshots/{id}` answered in front of the framework when it is the common case.

Clients poll this route until their job ends, so it is most of an API process's traffic, and
FastAPI's routing, dependency solving and middleware cost more than the read itself. This
middleware answers the common case on its own: a principal the process already remembers
(services/principals.py) reading a live snapshot of its organization, within its budgets. It uses
the route's own pieces (credentials, budgets, `SnapshotReads.read_live`, `snapshot_body`,
JSONResponse), so the answer is the route's answer byte for byte.

Anything else goes on to the route, which answers in full, so every error keeps one home: no or
unknown credentials, a spent budget, a missing snapshot, a database error. Nothing is counted
against a token's budget unless this middleware answers, so a request it passes on is counted
once, by the route.
"""

from __future__ import annotations

import re

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from snapshotd.http.deps import Services, credentials_from, scope_address
from snapshotd.http.native import snapshot_body

PATH = re.compile(r"/api/v1/snapshots/([^/]+)")


class FastSnapshotRead:
    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("root_path"):
            match = PATH.fullmatch(scope["path"])
            if match is not None:
                response = await self._answer(scope, match[1])
                if response is not None:
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, snapshot_id: str) -> JSONResponse | None:
        """The route's 200, or None to let the route answer."""
        services = self.services
        authorization = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        presented = credentials_from(authorization.decode("latin-1"))
        principal = services.principals.get(presented)
        if principal is None:
            return None
        try:
            services.misses.check(scope_address(scope))
            services.token_requests.check(principal.token_id)
            snapshot = await services.reads.read_live(principal.org_id, snapshot_id)
            response = JSONResponse(snapshot_body(snapshot, snapshot.job))
            services.token_requests.take(principal.token_id)
        except Exception:  # the route meets it again and answers it in the surface's shape
            return None
        return response
