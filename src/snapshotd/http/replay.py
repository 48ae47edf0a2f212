"""The archive viewer: ReplayWeb.page (the `replaywebpage` npm package), served by snapshotd
itself under /replay/, so that a reviewer browses a capture's WACZ archive, not a picture of it,
with nothing loaded from a CDN.

The viewer is two scripts. `ui.js` defines the `<replay-web-page>` element that the console's
and the share link's replay pages embed; `sw.js` is a service worker that reads the WACZ, by
range requests, and answers the archived page's requests from it. The element registers the
worker at `{replayBase}sw.js` with `replayBase` as its scope, then opens `{replayBase}?source=…`
in an iframe that the worker answers once it controls it. So both scripts live under /replay/,
the scope is the worker's own folder (no Service-Worker-Allowed header needed), and /replay/
itself answers the iframe's first load when the worker is not in control yet.

A link to /replay/?source=… naming another site's archive would run that archive's scripts on
this origin, beside the console. So the app opens only archives this origin serves: /replay/
checks its `source` itself, and /replay/sw.js is snapshotd's own guard (static/replay-sw.js),
which refuses such a navigation before importing the package's worker, served as
/replay/viewer-sw.js.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, HTMLResponse

from snapshotd.config import Settings
from snapshotd.errors import Forbidden, NotFound, ServiceUnavailable
from snapshotd.http.deps import ServicesDep
from snapshotd.services.records import Snapshot

BASE = "/replay/"
ARCHIVE_ROLE = "wacz"
SCRIPTS = ("ui.js", "sw.js")
# What each address under /replay/ serves: the package's files, and the guard in front of its
# worker (under the name the viewer registers).
GUARD = Path(__file__).with_name("static") / "replay-sw.js"
SERVED = {"ui.js": "ui.js", "viewer-sw.js": "sw.js"}
# The scripts change only when the package does: a week in caches, revalidated by ETag after.
SCRIPT_HEADERS = {
    "Cache-Control": "public, max-age=604800",
    "X-Content-Type-Options": "nosniff",
}
# The viewer's app, as the worker itself serves it at /replay/ (its `serveIndex`). The iframe's
# first load can reach the server before the worker controls it, and the worker may then claim
# that very document, so the server's copy must be the same app.
APP_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><script src="./ui.js"></script></head>
<body><replay-app-main></replay-app-main></body></html>
"""

router = APIRouter(include_in_schema=False)


def viewer_dir(settings: Settings) -> Path:
    return settings.resolved_replay_viewer_dir


def viewer_version(settings: Settings) -> str:
    """The installed viewer's version; ServiceUnavailable, which every surface renders as its
    own error page, when its scripts are missing."""
    folder = viewer_dir(settings)
    if not all((folder / name).is_file() for name in SCRIPTS):
        raise ServiceUnavailable(
            "the archive viewer is not installed on this server; its operator installs it "
            "with `make deps` (the replaywebpage npm package)"
        )
    try:
        manifest = json.loads((folder / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    return str(manifest.get("version", ""))


def viewer_context(
    settings: Settings, snapshot: Snapshot, source: str, page: str
) -> dict[str, Any]:
    """What the replay page at the path `page` needs to show `snapshot`'s archive, read from the
    path `source`: NotFound when the snapshot has no archive, ServiceUnavailable when the viewer
    is not installed. An archived page opened on its own (in a new tab) is sent back to `page`,
    with where it was in the address's fragment, rather than to replayweb.page, the viewer's
    default, which would hand that site the archive's address."""
    if not any(each.role == ARCHIVE_ROLE for each in snapshot.artifacts):
        raise NotFound(f"snapshot {snapshot.id} has no web archive to browse")
    meta = snapshot.meta or {}
    return {
        "viewer_script": f"{BASE}ui.js?v={viewer_version(settings)}",
        "replay_base": BASE,
        "source": source,
        "page": page,
        # The page the archive opens on: where the capture landed, after any redirects.
        "archived_url": str(meta.get("final_url") or snapshot.url or ""),
    }


@router.get("/replay/", response_class=HTMLResponse)
def app_page(request: Request, source: str = "") -> Response:
    if not _own(request, source):
        raise Forbidden("this viewer opens only the archives this server keeps")
    # No script policy beyond the worker's own copy, which has none: only framing is limited.
    return HTMLResponse(
        APP_PAGE,
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": "frame-ancestors 'self'",
            "X-Frame-Options": "SAMEORIGIN",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get("/replay/{name}")
def script(name: str, services: ServicesDep) -> Response:
    if name != "sw.js" and name not in SERVED:
        raise NotFound(f"the archive viewer has no file {name}")
    viewer_version(services.settings)
    path = GUARD if name == "sw.js" else viewer_dir(services.settings) / SERVED[name]
    return FileResponse(path, media_type="text/javascript", headers=SCRIPT_HEADERS)


def _own(request: Request, source: str) -> bool:
    """Whether `source` names an address on the host the request came to."""
    if not source:
        return False
    parts = urlsplit(source)
    if parts.scheme not in ("", "http", "https") or source.startswith("//"):
        return False
    return not parts.netloc or parts.netloc == request.headers.get("host", "")
