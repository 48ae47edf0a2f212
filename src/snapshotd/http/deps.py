"""What a route may ask for, as Annotated aliases; authentication lives here and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from snapshotd.config import Settings
from snapshotd.errors import Unauthorized
from snapshotd.services.accounts import Principal, authenticate
from snapshotd.services.snapshots import Snapshots
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
    telemetry: Telemetry
    worker: Worker | None


def get_services(request: Request) -> AppServices:
    services: AppServices = request.app.state.services
    return services


ServicesDep = Annotated[AppServices, Depends(get_services)]


def bearer_token(request: Request) -> str:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return ""


def principal_from(services: AppServices, token: str) -> Principal:
    if not token:
        raise Unauthorized("an API token is required: send Authorization: Bearer <token>")
    with services.db.session() as session:
        return authenticate(session, token)


def bearer_principal(request: Request, services: ServicesDep) -> Principal:
    return principal_from(services, bearer_token(request))


PrincipalDep = Annotated[Principal, Depends(bearer_principal)]


def require(role: str) -> object:
    def check(principal: PrincipalDep) -> Principal:
        principal.require(role)
        return principal

    return Depends(check)


UploaderDep = Annotated[Principal, require("uploader")]
ManagerDep = Annotated[Principal, require("manager")]
