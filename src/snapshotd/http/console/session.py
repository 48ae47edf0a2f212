"""What every console page shares: the signed-in visitor, CSRF checks, rendering, and errors.

A page asks for `ConsoleUser` (GET) or `ConsoleForm` (POST: a valid session *and* a valid CSRF
token and same-origin request). Both resolve to a `Visit`: the principal, whose role gates writes
through `Principal.require` exactly as the API does, and the CSRF token its forms must carry.
Errors are rendered as console pages by `ConsoleRoute`; a missing session redirects to sign-in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from snapshotd.errors import Forbidden, SnapshotdError
from snapshotd.http.deps import ServicesDep
from snapshotd.http.problems import error_headers
from snapshotd.services import console_sessions
from snapshotd.services.accounts import Principal

COOKIE = "snapshotd_console"
COOKIE_PATH = "/console"
SIGN_IN = "/console/sign-in"
CSRF_FIELD = "csrf"

templates = Jinja2Templates(directory=Path(__file__).parents[1] / "templates")

PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
}


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
    """Where to go after signing in: a console path on this site, never elsewhere."""
    if not target or not target.startswith("/console") or target.startswith("//"):
        return "/console"
    return target if "\\" not in target else "/console"


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


class ConsoleRoute(APIRoute):
    """Renders the errors of console routes as console pages instead of problem+json."""

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
                first = invalid.errors()[0]
                where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query"))
                failure = SnapshotdError(f"{where}: {first.get('msg', 'invalid')}")
                failure.status, failure.title = 400, "Invalid request"
                return render_error(request, failure)

        return console_handler


async def current_visit(request: Request, services: ServicesDep) -> Visit:
    secret = request.cookies.get(COOKIE, "")
    principal = None
    if secret:
        principal = await asyncio.to_thread(console_sessions.principal_for, services.db, secret)
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
