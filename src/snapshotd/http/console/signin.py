"""Signing in to the console with an API token (optionally with its user's email), and out.

The sign-in form is protected from cross-site posting by a one-off value kept both in a cookie
that only this path receives and in the form (the visitor has no session yet to derive one from).
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse

from snapshotd.errors import Forbidden, TooManyRequests, Unauthorized
from snapshotd.http.console.session import (
    COOKIE,
    COOKIE_PATH,
    SIGN_IN,
    ConsoleForm,
    ConsoleRoute,
    CookieSpot,
    check_origin,
    cookie_spot,
    render,
    safe_next,
)
from snapshotd.http.deps import Credentials, Services, ServicesDep, signed_in

router = APIRouter(route_class=ConsoleRoute)

FORM_COOKIE = "snapshotd_console_form"
FAILED = "That token was not accepted. Check it (and the email, if you gave one) and try again."


def _session_spot(request: Request, services: Services) -> CookieSpot:
    return cookie_spot(request, services.settings, COOKIE, COOKIE_PATH)


def _form_spot(request: Request, services: Services) -> CookieSpot:
    return cookie_spot(request, services.settings, FORM_COOKIE, SIGN_IN)


def _form(
    request: Request,
    services: Services,
    *,
    next_path: str,
    email: str = "",
    error: str = "",
    status_code: int = 200,
    notice: str = "",
) -> Response:
    nonce = secrets.token_urlsafe(24)
    response = render(
        request,
        "console/sign_in.html",
        {"nonce": nonce, "next": next_path, "email": email, "error": error, "notice": notice},
        status_code=status_code,
    )
    spot = _form_spot(request, services)
    response.set_cookie(
        spot.name,
        nonce,
        path=spot.path,
        httponly=True,
        samesite="strict",
        secure=spot.secure,
        max_age=3600,
    )
    return response


@router.get("/sign-in", include_in_schema=False)
async def sign_in_page(
    request: Request, services: ServicesDep, next: str = "", signed_out: str = ""
) -> Response:
    secret = request.cookies.get(_session_spot(request, services).name, "")
    if secret:
        known = await asyncio.to_thread(services.console_sessions.principal_for, secret)
        if known is not None:
            return RedirectResponse(safe_next(next), status_code=303)
    notice = "You are signed out." if signed_out else ""
    return _form(request, services, next_path=safe_next(next), notice=notice)


@router.post("/sign-in", include_in_schema=False)
def sign_in(
    request: Request,
    services: ServicesDep,
    token: Annotated[str, Form(max_length=500)] = "",
    email: Annotated[str, Form(max_length=320)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    check_origin(request, services)
    form_spot = _form_spot(request, services)
    expected = request.cookies.get(form_spot.name, "")
    if not expected or not hmac.compare_digest(expected.encode(), csrf.encode()):
        raise Forbidden("the sign-in form expired; reload the page and try again")
    target, email = safe_next(next), email.strip()
    if not token.strip():
        return _form(
            request,
            services,
            next_path=target,
            email=email,
            error="Enter an API token.",
            status_code=400,
        )
    presented = Credentials(token.strip(), email or None)
    try:
        principal = signed_in(services, request, presented)
    except Unauthorized:
        return _form(
            request, services, next_path=target, email=email, error=FAILED, status_code=401
        )
    except TooManyRequests as error:
        return _form(
            request, services, next_path=target, email=email, error=error.detail, status_code=429
        )
    life = timedelta(hours=services.settings.console_session_hours)
    secret = services.console_sessions.open_session(principal, life)
    response = RedirectResponse(target, status_code=303)
    spot = _session_spot(request, services)
    response.set_cookie(
        spot.name,
        secret,
        path=spot.path,
        httponly=True,
        samesite="lax",
        secure=spot.secure,
        max_age=int(life.total_seconds()),
    )
    response.delete_cookie(form_spot.name, path=form_spot.path, secure=form_spot.secure)
    return response


@router.post("/sign-out", include_in_schema=False)
def sign_out(request: Request, visit: ConsoleForm, services: ServicesDep) -> Response:
    services.console_sessions.close_session(visit.secret)
    response = RedirectResponse(f"{SIGN_IN}?signed_out=1", status_code=303)
    spot = _session_spot(request, services)
    response.delete_cookie(spot.name, path=spot.path, secure=spot.secure)
    return response
