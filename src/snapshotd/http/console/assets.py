"""The console's stylesheet, scripts and icons."""

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
