"""The console's stylesheet and script, and its page for addresses that lead nowhere."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse

from snapshotd.errors import NotFound
from snapshotd.http.console.session import ConsoleRoute

router = APIRouter(route_class=ConsoleRoute)

STATIC = Path(__file__).parents[1] / "static"
_NAME = re.compile(r"^[a-z0-9-]+\.(css|js|svg)$")
MEDIA_TYPES = {"css": "text/css", "js": "text/javascript", "svg": "image/svg+xml"}
EVERY_METHOD = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@router.get("/static/{name}", include_in_schema=False)
def static_file(name: str) -> Response:
    path = STATIC / name
    if not _NAME.match(name) or not path.is_file():
        raise NotFound(f"no file {name}")
    return FileResponse(
        path,
        media_type=MEDIA_TYPES[name.rsplit(".", 1)[1]],
        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
    )


# Every method: a POST to a console address that takes none gets the console's page, not the
# API's problem+json 405.
@router.api_route("/{rest:path}", methods=list(EVERY_METHOD), include_in_schema=False)
def nowhere(rest: str) -> Response:
    raise NotFound("there is no console page at this address")
