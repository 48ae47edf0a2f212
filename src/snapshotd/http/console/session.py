"""What every console page shares: the signed-in visitor, CSRF checks, rendering, and errors.

A page asks for `ConsoleUser` (GET) or `ConsoleForm` (POST: a valid session *and* a valid CSRF
token and same-origin request). Both resolve to a `Visit`: the principal and the CSRF token its
forms must carry. A page or form that needs a role asks for it by name instead (`ManagerUser`,
`SharerForm`, ...), which checks the role after the session and the form, through
`Principal.require` exactly as the API does. Errors are rendered as console pages by
`ConsoleRoute`; a missing session redirects to sign-in.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, unquote, urlsplit

from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from snapshotd.config import Settings
from snapshotd.errors import BadRequest, Forbidden, InvalidRequest, SnapshotdError
from snapshotd.http.deps import ServicesDep
from snapshotd.http.problems import error_headers, refusal
from snapshotd.outage_log import OutageLog
from snapshotd.services import console_sessions
from snapshotd.services.accounts import Principal
from snapshotd.services.outages import as_outage, refused_value

PREFIX = "/console"
COOKIE = "snapshotd_console"
COOKIE_PATH = PREFIX
SIGN_IN = "/console/sign-in"
CSRF_FIELD = "csrf"
# Over https the console's cookies carry this prefix: a browser then takes such a cookie only
# from this very host, Secure, for path "/", so no other host under the same domain (a replay
# host, say) can plant one.
HOST_PREFIX = "__Host-"

log = logging.getLogger(__name__)
_outages = OutageLog(log, then="answering 503 with Retry-After until it is back")
templates = Jinja2Templates(directory=Path(__file__).parents[1] / "templates")

PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
}


@dataclass(frozen=True)
class CookieSpot:
    """Where one of the console's cookies lives for this request: its name, path and Secure."""

    name: str
    path: str
    secure: bool


def cookie_spot(request: Request, settings: Settings, name: str, path: str) -> CookieSpot:
    """`name` at `path` over plain http; over https (the request's, or the base URL's behind a
    proxy) the __Host- form of it at "/"."""
    if request.url.scheme == "https" or settings.base_url.startswith("https://"):
        return CookieSpot(HOST_PREFIX + name, "/", True)
    return CookieSpot(name, path, False)


class SignInRequired(Exception):
    """No live session: the visitor is sent to the sign-in page, then back to `path`."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


@dataclass(frozen=True)
class Visit:
    principal: Principal
    secret: str

    @property
    def csrf(self) -> str:
        return console_sessions.csrf_token(self.secret)

    def can(self, permission: str) -> bool:
        return self.principal.can(permission)


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path on this site, never elsewhere. Browsers
    resolve dot segments (`..`, `%2e%2e`) and read a backslash as a slash, so those are refused
    rather than trusted to stay below /console."""
    if not target or "\\" in target or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        return "/console"
    parts = urlsplit(target)
    inside = parts.path == PREFIX or parts.path.startswith(f"{PREFIX}/")
    dots = any(segment in (".", "..") for segment in unquote(parts.path).split("/"))
    if parts.scheme or parts.netloc or not inside or dots:
        return "/console"
    return target


def sign_in_redirect(path: str) -> RedirectResponse:
    return RedirectResponse(f"{SIGN_IN}?next={quote(safe_next(path))}", status_code=303)


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    visit: Visit | None = None,
    status_code: int = 200,
) -> Response:
    """A console page. The layout reads `visit` for the nav, the role and the CSRF token."""
    return templates.TemplateResponse(
        request,
        template,
        {"visit": visit, "csrf_field": CSRF_FIELD, **context},
        status_code=status_code,
        headers=PAGE_HEADERS,
    )


def render_error(request: Request, error: SnapshotdError) -> Response:
    response = render(
        request,
        "console/error.html",
        {"status": error.status, "title": error.title, "detail": error.detail},
        visit=getattr(request.state, "console_visit", None),
        status_code=error.status,
    )
    response.headers.update(error_headers(error))
    if "www-authenticate" in response.headers:
        del response.headers["www-authenticate"]
    return response


def _invalid(error: RequestValidationError) -> SnapshotdError:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query"))
    return InvalidRequest(f"{where}: {first.get('msg', 'invalid')}")


def _refused(error: StarletteHTTPException) -> SnapshotdError:
    """An error the framework raised itself, such as a body it could not parse."""
    return refusal(error, title="Request refused")


def _unexpected(request: Request, error: Exception) -> SnapshotdError:
    """A failure no page expected: an outage (503, logged once while it lasts) or a bug (500,
    logged with its traceback). Either way the visitor gets a console page, not problem+json."""
    doing = f"{request.method} {request.url.path}"
    outage = as_outage(error)
    if outage is not None:
        _outages.failed(outage, f"answering {doing}")
        return outage
    if refused_value(error):
        return BadRequest("a value in the request cannot be stored")
    log.exception("unhandled error on %s", doing)
    return SnapshotdError("an internal error occurred; it has been logged")


class ConsoleRoute(APIRoute):
    """Renders every error of a console route as a console page instead of problem+json."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired as missing:
                return sign_in_redirect(missing.path)
            except SnapshotdError as error:
                return render_error(request, error)
            except RequestValidationError as invalid:
                return render_error(request, _invalid(invalid))
            except StarletteHTTPException as refused:
                return render_error(request, _refused(refused))
            except Exception as error:
                return render_error(request, _unexpected(request, error))

        return console_handler


async def current_visit(request: Request, services: ServicesDep) -> Visit:
    spot = cookie_spot(request, services.settings, COOKIE, COOKIE_PATH)
    secret = request.cookies.get(spot.name, "")
    principal = None
    if secret:
        principal = await asyncio.to_thread(services.console_sessions.principal_for, secret)
    if principal is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target if request.method == "GET" else "/console")
    visit = Visit(principal, secret)
    request.state.console_visit = visit
    return visit


ConsoleUser = Annotated[Visit, Depends(current_visit)]


def check_origin(request: Request, services: ServicesDep) -> None:
    """A form posted from another site is refused, whatever it carries. Browsers send Origin on
    every POST; Referer is the fallback for those that leave it out."""
    sent = request.headers.get("origin") or request.headers.get("referer")
    if not sent:
        return
    parts = urlsplit(sent)
    allowed = {request.headers.get("host", "")}
    if services.settings.base_url:
        allowed.add(urlsplit(services.settings.base_url).netloc)
    if sent == "null" or parts.scheme not in ("http", "https") or parts.netloc not in allowed:
        raise Forbidden("this form was sent from another site; reload the page and try again")


async def checked_form(request: Request, visit: ConsoleUser, services: ServicesDep) -> Visit:
    """A POST from a signed-in visitor's own console page: same origin and a valid CSRF token,
    else 403 and nothing changes."""
    check_origin(request, services)
    form = await request.form()
    presented = form.get(CSRF_FIELD)
    if not isinstance(presented, str) or not console_sessions.csrf_matches(visit.secret, presented):
        raise Forbidden("the form's security token is missing or stale; reload and try again")
    return visit


ConsoleForm = Annotated[Visit, Depends(checked_form)]


def user_allowed(permission: str) -> Callable[[Visit], Awaitable[Visit]]:
    """A signed-in visit whose role allows `permission` (accounts.PERMISSIONS), else 403. A
    coroutine, like the checks it follows, so that FastAPI runs it inline."""

    async def check(visit: ConsoleUser) -> Visit:
        visit.principal.require(permission)
        return visit

    return check


def form_allowed(permission: str) -> Callable[[Visit], Awaitable[Visit]]:
    """A checked form whose sender's role allows `permission`, else 403 and nothing changes."""

    async def check(visit: ConsoleForm) -> Visit:
        visit.principal.require(permission)
        return visit

    return check


UploaderUser = Annotated[Visit, Depends(user_allowed("upload"))]
ManagerUser = Annotated[Visit, Depends(user_allowed("manage"))]
AdminUser = Annotated[Visit, Depends(user_allowed("admin"))]
UploaderForm = Annotated[Visit, Depends(form_allowed("upload"))]
SharerForm = Annotated[Visit, Depends(form_allowed("share"))]
ManagerForm = Annotated[Visit, Depends(form_allowed("manage"))]
AdminForm = Annotated[Visit, Depends(form_allowed("admin"))]


async def form_text(request: Request) -> dict[str, str]:
    """A posted form's text fields (files are left out), for forms re-shown as filled in."""
    return {key: value for key, value in (await request.form()).items() if isinstance(value, str)}
