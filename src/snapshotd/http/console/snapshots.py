"""The console's snapshot pages: the grid, one snapshot, its live status, thumbnail and files,
and its archived page in the replay viewer."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from snapshotd.errors import BadRequest, NotFound
from snapshotd.http import replay
from snapshotd.http.artifacts import (
    DIRECT_SECONDS,
    ArtifactRole,
    artifact_response,
    bundle_response,
)
from snapshotd.http.console import views
from snapshotd.http.console.session import PAGE_HEADERS, ConsoleRoute, ConsoleUser, render
from snapshotd.http.deps import Services, ServicesDep, public_base
from snapshotd.services import browse, thumbnails
from snapshotd.services.manifests import MANIFEST_ROLE
from snapshotd.services.snapshots import KINDS, STATUSES

router = APIRouter(route_class=ConsoleRoute)

PAGE_SIZE = 24
Text = Annotated[str, Query(max_length=browse.MAX_SEARCH)]


def _day(value: str, field: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{field} must be a date like 2025-01-31", field=field) from None


@router.get("", include_in_schema=False)
@router.get("/", include_in_schema=False)
@router.get("/snapshots", include_in_schema=False)
def snapshot_grid(
    request: Request,
    visit: ConsoleUser,
    services: ServicesDep,
    kind: Text = "",
    status: Text = "",
    location: Text = "",
    since: Text = "",
    until: Text = "",
    q: Text = "",
    archived: Text = "exclude",
    before: Text = "",
    after: Text = "",
    done: Text = "",
) -> Response:
    org_id = visit.principal.org_id
    shown = {"kind": kind, "status": status, "location": location, "since": since}
    shown |= {"until": until, "q": q, "archived": archived}
    error, listing = "", browse.Listing([])
    try:
        filters = browse.Filters(
            kind=kind,
            status=status,
            location=location,
            since=_day(since, "since"),
            until=_day(until, "until"),
            search=q.strip(),
            archived=archived or "exclude",
        )
        listing = services.browse.search(
            org_id, filters, before=before, after=after, limit=PAGE_SIZE
        )
    except BadRequest as problem:
        error = problem.detail
    query = {k: v for k, v in shown.items() if v and (k, v) != ("archived", "exclude")}
    context = {
        "nav": "snapshots",
        "cards": [views.card(s, listing.jobs.get(s.job_id or "")) for s in listing.items],
        "filters": shown,
        "query": query,
        "older": listing.older,
        "newer": listing.newer,
        "paged": bool(before or after),
        "error": error,
        "notice": views.DONE_MESSAGES.get(done, ""),
        "kinds": [(value, views.KIND_LABELS[value]) for value in KINDS],
        "statuses": [(value, views.STATUS_LABELS[value]) for value in STATUSES],
        "locations": services.browse.location_choices(org_id),
    }
    return render(
        request, "console/snapshots.html", context, visit=visit, status_code=400 if error else 200
    )


@router.get("/snapshots/{snapshot_id}", include_in_schema=False)
def snapshot_page(
    snapshot_id: str,
    request: Request,
    visit: ConsoleUser,
    services: ServicesDep,
    done: Text = "",
) -> Response:
    org_id = visit.principal.org_id
    snapshot, job = services.snapshots.get_with_job(org_id, snapshot_id)
    base = public_base(request, services)
    shares = views.share_rows(base, services.shares.list(org_id, snapshot_id))
    files = thumbnails.evidence_artifacts(snapshot.artifacts)
    context: dict[str, Any] = {
        "nav": "snapshots",
        "snapshot": snapshot,
        "card": views.card(snapshot, job),
        "live": views.live_status(snapshot, job),
        "image": next((a for a in files if a.role == "image"), None),
        "files": [{"row": a, "size": views.size(a.size)} for a in files],
        "manifest": any(a.role == MANIFEST_ROLE for a in files),
        "archive": any(a.role == replay.ARCHIVE_ROLE for a in files),
        "replay_setting": "" if services.settings.replay_origin else "SNAPSHOTD_REPLAY_ORIGIN",
        "facts": views.facts(snapshot),
        "shares": shares,
        "share_lives": views.SHARE_LIVES,
        "notice": views.DONE_MESSAGES.get(done, ""),
        "when": views.when,
    }
    return render(request, "console/snapshot.html", context, visit=visit)


@router.get("/snapshots/{snapshot_id}/status", include_in_schema=False)
def snapshot_status(snapshot_id: str, visit: ConsoleUser, services: ServicesDep) -> Response:
    snapshot, job = services.snapshots.get_with_job(visit.principal.org_id, snapshot_id)
    return JSONResponse(views.live_status(snapshot, job), headers={"Cache-Control": "no-store"})


@router.get("/snapshots/{snapshot_id}/thumbnail", include_in_schema=False)
def snapshot_thumbnail(
    snapshot_id: str, request: Request, visit: ConsoleUser, services: ServicesDep
) -> Response:
    snapshot = services.snapshots.get(visit.principal.org_id, snapshot_id)
    artifact = services.thumbnails.ensure(snapshot.id)
    if artifact is None:
        raise NotFound(f"snapshot {snapshot_id} has no image to show small")
    etag = f'"{artifact.sha256}"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=86400"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(
        services.thumbnails.read(artifact), media_type=artifact.media_type, headers=headers
    )


def _download(
    request: Request, services: Services, org_id: str, snapshot_id: str, role: str
) -> Response:
    # The image is shown inside the page, which allows this origin only, and the web archive
    # is streamed as on share links (a WACZ reader in a page reads it by ranges): both are
    # streamed. Other files may redirect to the bucket like the API's downloads.
    direct_for = None if role in ("image", replay.ARCHIVE_ROLE) else DIRECT_SECONDS
    response = artifact_response(
        request, services, org_id, snapshot_id, role, direct_for=direct_for
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@router.get("/snapshots/{snapshot_id}/files/{role}", include_in_schema=False)
def snapshot_file(
    snapshot_id: str,
    role: ArtifactRole,
    request: Request,
    visit: ConsoleUser,
    services: ServicesDep,
) -> Response:
    return _download(request, services, visit.principal.org_id, snapshot_id, role)


@router.get("/snapshots/{snapshot_id}/replay", include_in_schema=False)
def snapshot_replay(
    snapshot_id: str, request: Request, visit: ConsoleUser, services: ServicesDep
) -> Response:
    """The archived page itself, browsable in the replay viewer over the snapshot's WACZ: the
    viewer runs on the replay host, framed here, so the archived page's scripts never run on the
    console's origin."""
    snapshot = services.snapshots.get(visit.principal.org_id, snapshot_id)
    frame = replay.frame_context(
        services, snapshot, lifetime=replay.LINK_SECONDS, parent=_origin(request, services)
    )
    context = {"nav": "snapshots", "snapshot": snapshot, "card": views.card(snapshot, None)}
    response = render(request, "console/replay.html", context | frame, visit=visit)
    policy = replay.framing_policy(PAGE_HEADERS["Content-Security-Policy"], frame["replay_origin"])
    response.headers["Content-Security-Policy"] = policy
    return response


def _origin(request: Request, services: Services) -> str:
    parts = urlsplit(public_base(request, services))
    return f"{parts.scheme}://{parts.netloc}"


@router.get("/snapshots/{snapshot_id}/bundle", include_in_schema=False)
def snapshot_bundle(snapshot_id: str, visit: ConsoleUser, services: ServicesDep) -> Response:
    data = services.snapshots.bundle(visit.principal.org_id, snapshot_id)
    return bundle_response(data, snapshot_id, {"Cache-Control": "no-store"})


@router.get("/snapshots/{snapshot_id}/record", include_in_schema=False)
def snapshot_record(snapshot_id: str, visit: ConsoleUser, services: ServicesDep) -> Response:
    """The PDF evidence record, for a snapshot of a location."""
    org_id = visit.principal.org_id
    snapshot = services.snapshots.get(org_id, snapshot_id)
    if snapshot.location_id is None:
        raise NotFound("only a location's snapshots have a PDF record")
    _, data = services.evidence.record(org_id, snapshot.location_id, snapshot_id=snapshot.id)
    headers = {
        **PAGE_HEADERS,
        "Content-Disposition": f'inline; filename="{snapshot.id}-record.pdf"',
    }
    return Response(data, media_type="application/pdf", headers=headers)
