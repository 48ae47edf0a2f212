"""The native API under /api/v1: page snapshots, jobs, and captures while the client waits.
Downloading a snapshot's files lives in native_files.py."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from snapshotd.engines.capture import CaptureOptions
from snapshotd.errors import CaptureFailed, ServiceUnavailable
from snapshotd.http import openapi
from snapshotd.http.deps import (
    AdminDep,
    AppServices,
    ManagerDep,
    PrincipalDep,
    ServicesDep,
    UploaderDep,
)
from snapshotd.http.native_files import artifact_response
from snapshotd.services import holds
from snapshotd.services.accounts import Principal
from snapshotd.services.snapshot_reads import (
    ArtifactView,
    JobView,
    SnapshotView,
    read_snapshot,
)
from snapshotd.services.snapshots import Archived, parse_options
from snapshotd.services.thumbnails import evidence_artifacts
from snapshotd.store.models import Artifact, Job, Snapshot

router = APIRouter(prefix="/api/v1", tags=["snapshots"])

ARTIFACTS = ("image", "pdf", "html", "mhtml")


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=2000)


class SnapshotCreate(CaptureOptions):
    callback_url: str | None = Field(
        None, max_length=2000, description="Receives a signed JSON event when the job ends."
    )


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def job_body(job: Job | JobView) -> dict[str, Any]:
    return {
        "id": job.id,
        "state": job.state,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "progress": job.progress,
        "error": job.error or None,
        "created_at": iso(job.created_at),
        "updated_at": iso(job.updated_at),
        "finished_at": iso(job.finished_at),
        "href": f"/api/v1/jobs/{job.id}",
    }


def artifact_body(
    snapshot: Snapshot | SnapshotView, artifact: Artifact | ArtifactView
) -> dict[str, Any]:
    return {
        "role": artifact.role,
        "media_type": artifact.media_type,
        "sha256": artifact.sha256,
        "size": artifact.size,
        "width": artifact.width,
        "height": artifact.height,
        "href": f"/api/v1/snapshots/{snapshot.id}/{artifact.role}",
    }


def snapshot_body(
    snapshot: Snapshot | SnapshotView, job: Job | JobView | None = None
) -> dict[str, Any]:
    artifacts: list[Artifact | ArtifactView] = evidence_artifacts(snapshot.artifacts)
    body: dict[str, Any] = {
        "id": snapshot.id,
        "kind": snapshot.kind,
        "status": snapshot.status,
        "status_message": snapshot.status_message or None,
        "url": snapshot.url,
        "options": snapshot.options,
        "metadata": snapshot.meta,
        "artifacts": [artifact_body(snapshot, artifact) for artifact in artifacts],
        "created_at": iso(snapshot.created_at),
        "completed_at": iso(snapshot.completed_at),
        "expires_at": iso(snapshot.expires_at),
        "href": f"/api/v1/snapshots/{snapshot.id}",
        "job_id": snapshot.job_id,
        "archived": None,
        "legal_hold": None,
    }
    if snapshot.archived_at is not None:
        body["archived"] = {
            "at": iso(snapshot.archived_at),
            "by": snapshot.archived_by,
            "reason": snapshot.archived_reason,
        }
    if snapshot.legal_hold:
        body["legal_hold"] = {
            "at": iso(snapshot.held_at),
            "by": snapshot.held_by,
            "reason": snapshot.hold_reason,
        }
    if job is not None:
        body["job"] = job_body(job)
    return body


@router.post(
    "/snapshots", status_code=202, summary="Queue a page capture", responses=openapi.answers(409)
)
def create_snapshot(
    body: SnapshotCreate,
    principal: UploaderDep,
    services: ServicesDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> dict[str, Any]:
    options = CaptureOptions.model_validate(body.model_dump(exclude={"callback_url"}))
    snapshot = services.snapshots.create_page(
        principal.org_id,
        options,
        idempotency_key=idempotency_key,
        callback_url=body.callback_url,
        actor=principal.email,
    )
    # Read back with its job: an in-process worker may already have started it.
    created = read_snapshot(services.db, principal.org_id, snapshot.id)
    response.headers["Location"] = f"/api/v1/snapshots/{created.id}"
    return snapshot_body(created, created.job)


@router.get("/snapshots", summary="List snapshots, newest first")
def list_snapshots(
    request: Request,
    principal: PrincipalDep,
    services: ServicesDep,
    status: str | None = None,
    kind: str | None = None,
    created_after: openapi.Instant = None,
    created_before: openapi.Instant = None,
    archived: Archived = "exclude",
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    page = services.snapshots.list(
        principal.org_id,
        status=status,
        kind=kind,
        created_after=created_after,
        created_before=created_before,
        archived=archived,
        cursor=cursor,
        limit=limit,
    )
    next_href = None
    if page.next_cursor:
        query = {k: v for k, v in request.query_params.items() if k != "cursor"}
        next_href = f"/api/v1/snapshots?{urlencode({**query, 'cursor': page.next_cursor})}"
    return {
        "items": [snapshot_body(item) for item in page.items],
        "next_cursor": page.next_cursor,
        "links": {"next": next_href},
    }


@router.get("/snapshots/{snapshot_id}", summary="One snapshot with its job")
async def get_snapshot(
    snapshot_id: str, principal: PrincipalDep, services: ServicesDep
) -> Response:
    # The most frequent request: fast_read.py answers it in front of the framework when it can.
    # The body goes straight to JSON, as FastAPI's generic encoder would walk it again.
    snapshot = await read_live(services, principal.org_id, snapshot_id)
    return JSONResponse(snapshot_body(snapshot, snapshot.job))


async def read_live(services: AppServices, org_id: str, snapshot_id: str) -> SnapshotView:
    """read_snapshot (services/snapshot_reads.py) from a coroutine: inline on SQLite, where a
    read is a short local call, and on a worker thread on PostgreSQL, where it waits on the
    network."""
    if services.db.is_postgres:
        return await asyncio.to_thread(read_snapshot, services.db, org_id, snapshot_id)
    return read_snapshot(services.db, org_id, snapshot_id)


@router.delete(
    "/snapshots/{snapshot_id}",
    status_code=204,
    summary="Delete a snapshot",
    responses=openapi.answers(409),
)
def delete_snapshot(snapshot_id: str, principal: ManagerDep, services: ServicesDep) -> Response:
    services.snapshots.delete(principal.org_id, snapshot_id, actor=principal.email)
    return Response(status_code=204)


@router.post("/snapshots/{snapshot_id}/archive", summary="Archive: hide from default listings")
def archive_snapshot(
    snapshot_id: str, principal: ManagerDep, services: ServicesDep, body: Reason | None = None
) -> dict[str, Any]:
    reason = body.reason if body else ""
    return snapshot_body(
        holds.archive(
            services.db, principal.org_id, snapshot_id, actor=principal.email, reason=reason
        )
    )


@router.post("/snapshots/{snapshot_id}/unarchive", summary="Bring an archived snapshot back")
def unarchive_snapshot(
    snapshot_id: str, principal: ManagerDep, services: ServicesDep
) -> dict[str, Any]:
    return snapshot_body(
        holds.unarchive(services.db, principal.org_id, snapshot_id, actor=principal.email)
    )


@router.put("/snapshots/{snapshot_id}/hold", summary="Place a legal hold")
def hold_snapshot(
    snapshot_id: str, body: Reason, principal: AdminDep, services: ServicesDep
) -> dict[str, Any]:
    return snapshot_body(
        holds.hold(
            services.db, principal.org_id, snapshot_id, actor=principal.email, reason=body.reason
        )
    )


@router.delete("/snapshots/{snapshot_id}/hold", summary="Lift a legal hold")
def release_snapshot(
    snapshot_id: str, principal: AdminDep, services: ServicesDep
) -> dict[str, Any]:
    return snapshot_body(
        holds.release(services.db, principal.org_id, snapshot_id, actor=principal.email)
    )


@router.get("/jobs/{job_id}", tags=["jobs"], summary="A job's state")
def get_job(job_id: str, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    return job_body(services.snapshots.get_job(principal.org_id, job_id))


async def capture_now(
    services: AppServices, principal: Principal, options: CaptureOptions, *, surface: str
) -> Snapshot:
    """Captures while the client waits: on this process's own worker when it has one, else through
    the queue. Either way the job row exists, so a crash mid-capture is retried like any job."""
    worker = services.worker
    local = worker is not None and worker.ready.is_set()
    org_id = principal.org_id
    snapshot = await asyncio.to_thread(
        services.snapshots.create_page,
        org_id,
        options,
        surface=surface,
        claimed_by=worker.id if local and worker else None,
        actor=principal.email,
    )
    if local and worker is not None:
        await asyncio.wrap_future(worker.submit(worker.run_claimed(snapshot)))
    else:
        await _wait_for(services, org_id, snapshot, options)
    snapshot = await asyncio.to_thread(services.snapshots.get, org_id, snapshot.id)
    if snapshot.status == "failed":
        raise CaptureFailed(snapshot.status_message or "the capture failed")
    if snapshot.status != "success":
        raise ServiceUnavailable(
            f"snapshot {snapshot.id} is still {snapshot.status}; fetch it later", retry_after=5
        )
    return snapshot


async def _wait_for(
    services: AppServices, org_id: str, snapshot: Snapshot, options: CaptureOptions
) -> None:
    limit = (options.timeout_ms or services.settings.capture_timeout_ms) / 1000 + 30
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        current = await asyncio.to_thread(services.snapshots.get, org_id, snapshot.id)
        if current.status in ("success", "failed"):
            return
        await asyncio.sleep(0.1)


@router.get(
    "/capture",
    summary="Capture and answer with the image bytes",
    response_class=Response,
    responses={**openapi.answers(400, 502), **openapi.files(*openapi.IMAGES, "application/pdf")},
    openapi_extra=openapi.query(
        CaptureOptions, exclude=("headers", "cookies"), flags=("full_page", "evidence")
    ),
)
async def capture(
    request: Request,
    principal: UploaderDep,
    services: ServicesDep,
) -> Response:
    params: dict[str, Any] = dict(request.query_params)
    if "hide_selectors" in params:
        params["hide_selectors"] = request.query_params.getlist("hide_selectors")
    for flag in ("full_page", "evidence"):
        if flag in params:
            params[flag] = params[flag].lower() in ("1", "true", "yes", "on")
    options = parse_options(params)
    snapshot = await capture_now(services, principal, options, surface="native")
    role = "pdf" if options.format == "pdf" else "image"
    response = await asyncio.to_thread(
        artifact_response, request, services, principal.org_id, snapshot.id, role
    )
    response.headers["X-Snapshot-Id"] = snapshot.id
    return response
