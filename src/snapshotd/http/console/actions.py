"""What a console visitor does to a snapshot: share, revoke, archive, hold, delete.

Each POST needs a checked form (`ConsoleForm`: session, CSRF token, same origin) and the same
permission the API asks for, and goes through the same service, so audit and rules apply alike.
After it, the browser is sent back to a page that says what happened.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse

from snapshotd.http.console import views
from snapshotd.http.console.session import (
    ConsoleForm,
    ConsoleRoute,
    ConsoleUser,
    Visit,
    render,
)
from snapshotd.http.deps import Services, ServicesDep

router = APIRouter(route_class=ConsoleRoute)

Reason = Annotated[str, Form(max_length=2000)]

# What each archive or hold form does and the least role it needs, by the message it leads to.
HOLD_CHANGES: dict[str, tuple[str, str]] = {
    "archived": ("manage", "archive"),
    "unarchived": ("manage", "unarchive"),
    "held": ("admin", "hold"),
    "released": ("admin", "release"),
}


def _back(snapshot_id: str, done: str) -> Response:
    return RedirectResponse(f"/console/snapshots/{snapshot_id}?done={done}", status_code=303)


@router.post("/snapshots/{snapshot_id}/shares", include_in_schema=False)
def create_share(
    snapshot_id: str,
    visit: ConsoleForm,
    services: ServicesDep,
    public: Annotated[str, Form(max_length=10)] = "",
    expires_in: Annotated[int, Form(ge=0)] = 0,
) -> Response:
    visit.principal.require("share")
    lifetime = expires_in if expires_in in views.SHARE_LIVES else 0
    services.shares.create(
        visit.principal, snapshot_id, public=bool(public), expires_in=lifetime or None
    )
    return _back(snapshot_id, "shared")


@router.post("/snapshots/{snapshot_id}/shares/{share_id}/revoke", include_in_schema=False)
def revoke_share(
    snapshot_id: str, share_id: str, visit: ConsoleForm, services: ServicesDep
) -> Response:
    visit.principal.require("share")
    services.shares.revoke(visit.principal, share_id)
    return _back(snapshot_id, "revoked")


def _change(visit: Visit, services: Services, snapshot_id: str, done: str, **how: str) -> Response:
    """Archives, holds or lifts either, with the role the API asks for, and says so after."""
    principal = visit.principal
    permission, change = HOLD_CHANGES[done]
    principal.require(permission)
    getattr(services.holds, change)(principal.org_id, snapshot_id, actor=principal.email, **how)
    return _back(snapshot_id, done)


@router.post("/snapshots/{snapshot_id}/archive", include_in_schema=False)
def archive(
    snapshot_id: str, visit: ConsoleForm, services: ServicesDep, reason: Reason = ""
) -> Response:
    return _change(visit, services, snapshot_id, "archived", reason=reason.strip())


@router.post("/snapshots/{snapshot_id}/unarchive", include_in_schema=False)
def unarchive(snapshot_id: str, visit: ConsoleForm, services: ServicesDep) -> Response:
    return _change(visit, services, snapshot_id, "unarchived")


@router.post("/snapshots/{snapshot_id}/hold", include_in_schema=False)
def hold(
    snapshot_id: str, visit: ConsoleForm, services: ServicesDep, reason: Reason = ""
) -> Response:
    return _change(visit, services, snapshot_id, "held", reason=reason.strip())


@router.post("/snapshots/{snapshot_id}/release", include_in_schema=False)
def release(snapshot_id: str, visit: ConsoleForm, services: ServicesDep) -> Response:
    return _change(visit, services, snapshot_id, "released")


@router.get("/snapshots/{snapshot_id}/delete", include_in_schema=False)
def confirm_delete(
    snapshot_id: str, request: Request, visit: ConsoleUser, services: ServicesDep
) -> Response:
    """Asks before deleting; the page itself needs the role that may delete."""
    visit.principal.require("manage")
    snapshot = services.snapshots.get(visit.principal.org_id, snapshot_id)
    context = {"nav": "snapshots", "snapshot": snapshot}
    return render(request, "console/confirm_delete.html", context, visit=visit)


@router.post("/snapshots/{snapshot_id}/delete", include_in_schema=False)
def delete(snapshot_id: str, visit: ConsoleForm, services: ServicesDep) -> Response:
    principal = visit.principal
    principal.require("manage")
    services.snapshots.delete(principal.org_id, snapshot_id, actor=principal.email)
    return RedirectResponse("/console?done=deleted", status_code=303)
