"""What a route may ask for, as Annotated aliases; authentication lives here and nowhere else.

Schemes, all resolving to one Principal (docs/auth.md): `Authorization: Bearer <token>` and HTTP
Basic `email:token` (the form ThousandEyes v6 and Librato clients send). Every failure answers the
same 401, and failures count against the client address's miss budget; every success counts
against the token's request budget.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from snapshotd.config import Settings
from snapshotd.errors import Unauthorized
from snapshotd.services.accounts import DENIED, Principal, authenticate
from snapshotd.services.chart_snapshots import ChartSnapshots
from snapshotd.services.charts import Spaces
from snapshotd.services.evidence import Evidence
from snapshotd.services.locations import Locations
from snapshotd.services.metrics import Metrics
from snapshotd.services.ratelimit import TokenBuckets
from snapshotd.services.shares import Shares
from snapshotd.services.snapshots import Snapshots
from snapshotd.services.synthetic import Synthetic
from snapshotd.services.test_snapshots import TestSnapshots
from snapshotd.store.blobs import BlobStore
from snapshotd.store.db import Database
from snapshotd.store.queue import JobQueue
from snapshotd.telemetry import Telemetry
from snapshotd.worker import Worker


@dataclass
class AppServices:
    settings: Settings
    db: Database
    blobs: BlobStore
    queue: JobQueue
    snapshots: Snapshots
    shares: Shares
    metrics: Metrics
    spaces: Spaces
    chart_snapshots: ChartSnapshots
    synthetic: Synthetic
    test_snapshots: TestSnapshots
    locations: Locations
    evidence: Evidence
    telemetry: Telemetry
    worker: Worker | None
    token_requests: TokenBuckets
    misses: TokenBuckets


def public_base(request: Request, services: AppServices) -> str:
    """The base of links handed out: SNAPSHOTD_BASE_URL, else the URL the request came to."""
    return services.settings.base_url.rstrip("/") or str(request.base_url).rstrip("/")


async def get_services(request: Request) -> AppServices:
    services: AppServices = request.app.state.services
    return services


ServicesDep = Annotated[AppServices, Depends(get_services)]


@dataclass(frozen=True)
class Credentials:
    token: str
    email: str | None = None


def credentials(request: Request, *, basic: bool = True) -> Credentials:
    """The token (and, for Basic, the email) a request presents; empty when there is none."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
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
    return request.client.host if request.client else "unknown"


def principal_from(services: AppServices, request: Request, presented: Credentials) -> Principal:
    """Authenticates, counting a failure against the caller's address (429 once it has failed too
    often) and a success against the token's request budget."""
    address = client_address(request)
    services.misses.check(address)
    try:
        if not presented.token:
            raise Unauthorized(DENIED)
        with services.db.session() as session:
            principal = authenticate(session, presented.token, email=presented.email)
    except Unauthorized:
        services.misses.take(address)
        raise
    services.token_requests.take(principal.token_id)
    return principal


def request_principal(request: Request, services: ServicesDep) -> Principal:
    return principal_from(services, request, credentials(request))


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
