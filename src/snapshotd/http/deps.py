"""What a route may ask for, as Annotated aliases, and how a request is signed in: every surface
authenticates through the functions here (a dialect through `wire.principal_factory`).

Schemes, all resolving to one Principal (docs/auth.md): `Authorization: Bearer <token>` and HTTP
Basic `email:token` (the form ThousandEyes v6 and Librato clients send). Every failure answers the
same 401, and failures count against the client address's miss budget; every success counts
against the token's request budget.

A principal is remembered for a short while after the database vouched for it
(services/principals.py says how long and why).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from starlette.types import Scope

from snapshotd.errors import Unauthorized
from snapshotd.services.accounts import DENIED, Principal
from snapshotd.services.graph import Services
from snapshotd.services.principals import Credentials


def public_base(request: Request, services: Services) -> str:
    """The base of links handed out: SNAPSHOTD_BASE_URL, else the URL the request came to."""
    return services.settings.base_url.rstrip("/") or str(request.base_url).rstrip("/")


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def credentials(request: Request, *, basic: bool = True) -> Credentials:
    """The token (and, for Basic, the email) a request presents; empty when there is none."""
    return credentials_from(request.headers.get("authorization", ""), basic=basic)


def credentials_from(authorization: str, *, basic: bool = True) -> Credentials:
    """The credentials in an Authorization header's value."""
    scheme, _, value = authorization.partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "bearer" and value:
        return Credentials(value)
    if scheme == "basic" and value and basic:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return Credentials("")
        email, colon, token = decoded.partition(":")
        if colon and email and token:
            return Credentials(token, email)
    return Credentials("")


def client_address(request: Request) -> str:
    return scope_address(request.scope)


def scope_address(scope: Scope) -> str:
    """The client's address as the server saw it (after trusted proxy headers)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def known_principal(
    services: Services, request: Request, presented: Credentials
) -> Principal | None:
    """The remembered principal, counted against the token's request budget; None when only the
    database can tell. Never blocks, so a coroutine may call it."""
    services.misses.check(client_address(request))
    principal = services.principals.get(presented)
    if principal is not None:
        services.token_requests.take(principal.token_id)
    return principal


def signed_in(services: Services, request: Request, presented: Credentials) -> Principal:
    """Asks the database, counting a failure against the caller's address (429 once it has failed
    too often) and a success against the token's request budget."""
    try:
        if not presented.token:
            raise Unauthorized(DENIED)
        principal = services.accounts.sign_in(presented.token, email=presented.email)
    except Unauthorized:
        services.misses.take(client_address(request))
        raise
    services.principals.put(presented, principal)
    services.token_requests.take(principal.token_id)
    return principal


def principal_from(services: Services, request: Request, presented: Credentials) -> Principal:
    return known_principal(services, request, presented) or signed_in(services, request, presented)


async def principal_of(request: Request, services: Services, presented: Credentials) -> Principal:
    """`principal_from` for a coroutine: a remembered principal costs no worker thread; only a
    sign-in that has to ask the database runs on one."""
    known = known_principal(services, request, presented)
    if known is not None:
        return known
    return await asyncio.to_thread(signed_in, services, request, presented)


async def request_principal(request: Request, services: ServicesDep) -> Principal:
    return await principal_of(request, services, credentials(request))


PrincipalDep = Annotated[Principal, Depends(request_principal)]


def require(permission: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that lets the request through only with `permission` (accounts.PERMISSIONS).
    It is a coroutine so that FastAPI runs it inline rather than on a worker thread."""

    async def check(principal: PrincipalDep) -> Principal:
        principal.require(permission)
        return principal

    return check


UploaderDep = Annotated[Principal, Depends(require("upload"))]
SharerDep = Annotated[Principal, Depends(require("share"))]
ManagerDep = Annotated[Principal, Depends(require("manage"))]
AdminDep = Annotated[Principal, Depends(require("admin"))]
