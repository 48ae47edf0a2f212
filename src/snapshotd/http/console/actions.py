"""What a console visitor does to a snapshot: share, revoke, archive, hold, delete.

Each POST needs a checked form (session, CSRF token, same origin) from a visitor with the role
the API asks for (`SharerForm`, `ManagerForm`, `AdminForm`), and goes through the same service,
so audit and rules apply alike. After it, the browser is sent back to a page that says what
happened.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse

from snapshotd.http.console import views
from snapshotd.http.console.session import (
    AdminForm,
    ConsoleRoute,
    ManagerForm,
    ManagerUser,
    SharerForm,
    render,
)
from snapshotd.http.deps import ServicesDep

router = APIRouter(route_class=ConsoleRoute)

Reason = Annotated[str, Form(max_length=2000)]


def _back(snapshot_id: str, done: str) -> Response:
    return RedirectResponse(f"/console/snapshots/{snapshot_id}?done={done}", status_code=303)


@router.post("/snapshots/{snapshot_id}/shares", include_in_schema=False)
def create_share(
    snapshot_id: str,
    visit: SharerForm,
    services: ServicesDep,
    public: Annotated[str, Form(max_length=10)] = "",
    expires_in: Annotated[int, Form(ge=0)] = 0,
    evidence: Annotated[str, Form(max_length=10)] = "",
    replay: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    lifetime = expires_in if expires_in in views.SHARE_LIVES else 0
    services.shares.create(
        visit.principal,
        snapshot_id,
        public=bool(public),
        expires_in=lifetime or None,
        evidence=bool(evidence),
        replay=bool(replay),
    )
    return _back(snapshot_id, "shared")


@router.post("/snapshots/{snapshot_id}/shares/{share_id}/revoke", include_in_schema=False)
def revoke_share(
    snapshot_id: str, share_id: str, visit: SharerForm, services: ServicesDep
) -> Response:
    services.shares.revoke(visit.principal, share_id)
    return _back(snapshot_id, "revoked")


# Archiving and holding ask for the roles the API asks for: manage to archive, admin to hold.
@router.post("/snapshots/{snapshot_id}/archive", include_in_schema=False)
def archive(
    snapshot_id: str, visit: ManagerForm, services: ServicesDep, reason: Reason = ""
) -> Response:
    principal = visit.principal
    services.holds.archive(
        principal.org_id, snapshot_id, actor=principal.email, reason=reason.strip()
    )
    return _back(snapshot_id, "archived")


@router.post("/snapshots/{snapshot_id}/unarchive", include_in_schema=False)
def unarchive(snapshot_id: str, visit: ManagerForm, services: ServicesDep) -> Response:
    principal = visit.principal
    services.holds.unarchive(principal.org_id, snapshot_id, actor=principal.email)
    return _back(snapshot_id, "unarchived")


@router.post("/snapshots/{snapshot_id}/hold", include_in_schema=False)
def hold(
    snapshot_id: str, visit: AdminForm, services: ServicesDep, reason: Reason = ""
) -> Response:
    principal = visit.principal
    services.holds.hold(principal.org_id, snapshot_id, actor=principal.email, reason=reason.strip())
    return _back(snapshot_id, "held")


@router.post("/snapshots/{snapshot_id}/release", include_in_schema=False)
def release(snapshot_id: str, visit: AdminForm, services: ServicesDep) -> Response:
    principal = visit.principal
    services.holds.release(principal.org_id, snapshot_id, actor=principal.email)
    return _back(snapshot_id, "released")


@router.get("/snapshots/{snapshot_id}/delete", include_in_schema=False)
def confirm_delete(
    snapshot_id: str, request: Request, visit: ManagerUser, services: ServicesDep
) -> Response:
    """Asks before deleting; the page itself needs the role that may delete."""
    snapshot = services.snapshots.get(visit.principal.org_id, snapshot_id)
    context = {"nav": "snapshots", "snapshot": snapshot}
    return render(request, "console/confirm_delete.html", context, visit=visit)


@router.post("/snapshots/{snapshot_id}/delete", include_in_schema=False)
def delete(snapshot_id: str, visit: ManagerForm, services: ServicesDep) -> Response:
    principal = visit.principal
    services.snapshots.delete(principal.org_id, snapshot_id, actor=principal.email)
    return RedirectResponse("/console?done=deleted", status_code=303)
