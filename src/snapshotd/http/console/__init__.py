"""The web console at /console: server-rendered pages over the same services as the API.

Each page module has its own router, with paths relative to /console; they are joined here, with
the console's own answer for addresses that lead nowhere last.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute

from snapshotd.errors import MethodNotAllowed, NotFound
from snapshotd.http.console import (
    actions,
    assets,
    capture,
    charts,
    locations,
    render_keys,
    signin,
    snapshots,
    tests_pages,
)
from snapshotd.http.console.session import PREFIX, ConsoleRoute

PAGES = (
    signin,
    snapshots,
    actions,
    capture,
    locations,
    charts,
    tests_pages,
    render_keys,
    assets,
)
EVERY_METHOD = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

nowhere_router = APIRouter(route_class=ConsoleRoute)


# Every method, so that a console address always answers with the console's page rather than
# the API's problem+json: 405 with Allow where a page takes other methods, else 404.
@nowhere_router.api_route("/{rest:path}", methods=list(EVERY_METHOD), include_in_schema=False)
def nowhere(request: Request, rest: str) -> Response:
    path = "/" + rest
    allowed = {
        method
        for part in PAGES
        for route in part.router.routes
        if isinstance(route, APIRoute) and route.path_regex.match(path)
        for method in route.methods or ()
    }
    if allowed:
        raise MethodNotAllowed(
            f"this console page does not take {request.method}",
            headers={"Allow": ", ".join(sorted(allowed))},
        )
    raise NotFound("there is no console page at this address")


router = APIRouter(tags=["console"])
for part in PAGES:
    router.include_router(part.router, prefix=PREFIX)
router.include_router(nowhere_router, prefix=PREFIX)  # last: it answers every address left

__all__ = ["router"]
