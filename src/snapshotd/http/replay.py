"""The archive viewer: ReplayWeb.page (the `replaywebpage` npm package), served by snapshotd
itself, so that a reviewer browses a capture's WACZ archive, not a picture of it, with nothing
loaded from a CDN.

Two hosts. A replayed page runs its own scripts, and a hostile page captured on purpose would,
on the console's origin, read the console with the reviewer's session cookie. So replay runs on
a host name of its own, SNAPSHOTD_REPLAY_ORIGIN, pointed at this same server: cookies are kept
per host (not per port), and none is ever set on that one. `ReplayHost` sorts requests by their
Host header: the replay host is served the viewer and nothing else (`REPLAY_PATHS`), and every
other host is refused the viewer. Without the setting, replay is not offered at all.

The console's and the share link's replay pages stay on the main origin and frame
`{replay origin}/replay/view`, naming the archive by a signed, expiring download link on the
replay host (`/replay/archive/{id}.wacz?expires=…&sig=…`, no token or cookie needed). The view
page embeds `<replay-web-page>` (the package's `ui.js`), which registers the package's service
worker at `/replay/sw.js`, scope /replay/, then opens `/replay/?source=…` in an iframe that the
worker answers from the archive, read by range requests. /replay/ itself answers that iframe's
first load when the worker is not in control yet.

Only the archives this server signs are opened: /replay/view verifies its `source`'s
signature, /replay/ checks that its `source` is on its own host, and /replay/sw.js is
snapshotd's own guard (static/replay-sw.js), which refuses a navigation naming another site's
archive before importing the package's worker, served as /replay/viewer-sw.js.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse
from fastapi.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from snapshotd.config import Settings
from snapshotd.errors import Forbidden, Gone, NotFound, ServiceUnavailable
from snapshotd.http.artifacts import signed_artifact_response
from snapshotd.http.deps import Services, ServicesDep
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
# The only paths the replay host answers; the archive route checks its own name.
REPLAY_PATHS = frozenset(BASE + name for name in ("", "view", "ui.js", "sw.js", "viewer-sw.js"))
ARCHIVES = BASE + "archive/"
ARCHIVE_PATH = re.compile(r"^/replay/archive/([A-Za-z0-9_-]{1,64})\.wacz$")
# How long a replay page's link to its archive lives; a share link's lives no longer than it.
LINK_SECONDS = 3600
NOT_SET = (
    "replaying archived pages needs a host name of its own, which this server does not have: "
    "its operator sets SNAPSHOTD_REPLAY_ORIGIN (docs/settings.md). The WACZ file still downloads"
)
# The view page runs the viewer's script from the replay host and frames /replay/ there.
VIEW_POLICY = (
    "default-src 'self'; style-src 'self' 'unsafe-inline'; object-src 'none'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors {ancestor}"
)

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))


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


def replay_origin(settings: Settings) -> str:
    """The replay host's origin; ServiceUnavailable saying how to set it when there is none."""
    if not settings.replay_origin:
        raise ServiceUnavailable(NOT_SET)
    return settings.replay_origin


def frame_context(
    services: Services, snapshot: Snapshot, *, lifetime: int, parent: str
) -> dict[str, Any]:
    """What a main-origin replay page needs to frame `snapshot`'s archive in the viewer on the
    replay host: ServiceUnavailable when replay is not set up or the viewer is not installed,
    NotFound when the snapshot has no archive. The archive link lives `lifetime` seconds;
    `parent` is the framing page's origin, which the view page lets frame it when
    SNAPSHOTD_BASE_URL does not say."""
    origin = replay_origin(services.settings)
    viewer_version(services.settings)
    if not any(each.role == ARCHIVE_ROLE for each in snapshot.artifacts):
        raise NotFound(f"snapshot {snapshot.id} has no web archive to browse")
    expires, sig = services.downloads.sign(snapshot, ARCHIVE_ROLE, lifetime=lifetime)
    source = f"{origin}{ARCHIVES}{snapshot.id}.wacz?" + urlencode({"expires": expires, "sig": sig})
    meta = snapshot.meta or {}
    # The page the archive opens on: where the capture landed, after any redirects.
    archived_url = str(meta.get("final_url") or snapshot.url or "")
    query = urlencode({"source": source, "url": archived_url, "parent": parent})
    return {
        "replay_origin": origin,
        "view_url": f"{origin}{BASE}view?{query}",
        "archived_url": archived_url,
    }


def framing_policy(policy: str, origin: str) -> str:
    """A page's Content-Security-Policy `policy`, letting it frame the replay host only."""
    return f"{policy}; frame-src {origin}"


@router.get("/replay/", response_class=HTMLResponse)
def app_page(
    request: Request, services: ServicesDep, source: str = "", basePageUrl: str = ""
) -> Response:
    origin = replay_origin(services.settings)
    if not _own(request, source):
        raise Forbidden("this viewer opens only the archives this server keeps")
    # The view page that frames this app names, in its own address, the main origin framing it.
    parent = dict(parse_qsl(urlsplit(basePageUrl).query)).get("parent", "")
    ancestors = " ".join(["'self'", _main_origin(services.settings, parent, origin)]).strip()
    # No script policy beyond the worker's own copy, which has none: only framing is limited,
    # to the view page and the main-origin page framing it (every ancestor is checked).
    return HTMLResponse(
        APP_PAGE,
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": f"frame-ancestors {ancestors}",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get("/replay/view", response_class=HTMLResponse)
def view_page(
    request: Request, services: ServicesDep, source: str = "", url: str = "", parent: str = ""
) -> Response:
    """The viewer over one signed archive, for the main origin's replay pages to frame."""
    origin = replay_origin(services.settings)
    version = viewer_version(services.settings)
    if not _signed_archive(request, services, source):
        raise Forbidden("this viewer opens only the archives this server signs a link to")
    here = f"{BASE}view?" + urlencode({"source": source, "url": url, "parent": parent})
    context = {
        "viewer_script": f"{BASE}ui.js?v={version}",
        "replay_base": BASE,
        "source": source,
        "archived_url": url,
        # An archived page opened on its own (in a new tab) comes back to this viewer, where it
        # was named in the fragment, rather than to replayweb.page, the viewer's default, which
        # would hand that site the archive's link.
        "page": here,
    }
    ancestor = _main_origin(services.settings, parent, origin) or "'none'"
    return templates.TemplateResponse(
        request,
        "replay_view.html",
        context,
        headers={
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": VIEW_POLICY.format(ancestor=ancestor),
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get("/replay/archive/{name}")
def archive(name: str, expires: int, sig: str, request: Request, services: ServicesDep) -> Response:
    """A snapshot's WACZ through a signed link, streamed (never redirected to the bucket: the
    viewer's worker reads it from its own host), answering Range requests with 206."""
    replay_origin(services.settings)
    found = ARCHIVE_PATH.match(ARCHIVES + name)
    if found is None:
        raise NotFound("no such archive")
    response = signed_artifact_response(
        request, services, found[1], ARCHIVE_ROLE, expires, sig, direct=False
    )
    response.headers.update({"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
    return response


@router.get("/replay/{name}")
def script(name: str, services: ServicesDep) -> Response:
    replay_origin(services.settings)
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


def _signed_archive(request: Request, services: Services, source: str) -> bool:
    """Whether `source` is a live signed link to an archive on the host the request came to."""
    if not _own(request, source):
        return False
    parts = urlsplit(source)
    found = ARCHIVE_PATH.match(parts.path)
    query = dict(parse_qsl(parts.query))
    expires, sig = query.get("expires", ""), query.get("sig", "")
    if found is None or not expires.isdigit() or len(expires) > 12 or not sig:
        return False
    try:
        services.downloads.verify(found[1], ARCHIVE_ROLE, int(expires), sig)
    except (NotFound, Gone):
        return False
    return True


def _main_origin(settings: Settings, parent: str, origin: str) -> str:
    """The origin that may frame the view page: SNAPSHOTD_BASE_URL's, else the one the framing
    page named, when it is an http(s) origin on another host; else none ("")."""
    if settings.base_url:
        parts = urlsplit(settings.base_url)
        return f"{parts.scheme}://{parts.netloc}"
    parts = urlsplit(parent)
    named = f"{parts.scheme}://{parts.netloc}"
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or named != parent
        or parts.hostname == urlsplit(origin).hostname
        or not re.fullmatch(r"[A-Za-z0-9.:\[\]-]+", parts.netloc)
    ):
        return ""
    return named


def _host_port(host: str, scheme: str) -> tuple[str, int]:
    """A Host header or an origin's netloc as (lower-case host, port), the scheme's default
    port when it names none; ("", 0) when it does not parse."""
    try:
        parts = urlsplit(f"//{host}")
        port = parts.port
    except ValueError:
        return "", 0
    return parts.hostname or "", port or (443 if scheme == "https" else 80)


class ReplayHost:
    """Sorts requests by host when a replay origin is set: the replay host is answered its
    viewer paths only, with no cookie ever set, and 404 for everything else (the console, the
    API, share pages, static files); any other host is answered 404 for the viewer's paths."""

    def __init__(self, app: ASGIApp, origin: str) -> None:
        self.app = app
        parts = urlsplit(origin)
        self.scheme = parts.scheme
        self.host = _host_port(parts.netloc, parts.scheme)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope["headers"] if k == b"host"), b"")
        path: str = scope["path"]
        if _host_port(header.decode("latin-1"), self.scheme) != self.host:
            if path.startswith(BASE):
                await _not_here(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        if path not in REPLAY_PATHS and not path.startswith(ARCHIVES):
            await _not_here(scope, receive, send)
            return

        async def cookieless(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message["headers"] if k.lower() != b"set-cookie"]
                message = {**message, "headers": kept}
            await send(message)

        await self.app(scope, receive, cookieless)


async def _not_here(scope: Scope, receive: Receive, send: Send) -> None:
    answer = PlainTextResponse(
        "Not found", status_code=404, headers={"X-Content-Type-Options": "nosniff"}
    )
    await answer(scope, receive, send)
