"""The native API under /api/v1: page snapshots, jobs, and captures while the client waits.
Downloading a snapshot's files lives in native_files.py."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from snapshotd.errors import BadRequest
from snapshotd.http import openapi
from snapshotd.http.artifacts import artifact_response
from snapshotd.http.deps import (
    AdminDep,
    ManagerDep,
    PrincipalDep,
    ServicesDep,
    UploaderDep,
)
from snapshotd.rules import MAX_CACHE_TTL
from snapshotd.services.capture_cache import CacheAsk
from snapshotd.services.capture_request import (
    FLAGS,
    CaptureRequest,
    fields_from_text,
    parse_request,
)
from snapshotd.services.records import Artifact, Job, Snapshot
from snapshotd.services.snapshot_reads import (
    ArtifactView,
    JobView,
    SnapshotView,
)
from snapshotd.services.snapshots import Archived
from snapshotd.services.thumbnails import evidence_artifacts
from snapshotd.timestamps import iso

router = APIRouter(prefix="/api/v1", tags=["snapshots"])

ARTIFACTS = ("image", "pdf", "html", "mhtml")
# The fields of a create request that ask something of the API rather than of the capture.
NOT_OPTIONS = {"callback_url", "cache_ttl", "force"}


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=2000)


class SnapshotCreate(CaptureRequest):
    callback_url: str | None = Field(
        None, max_length=2000, description="Receives a signed JSON event when the job ends."
    )
    cache_ttl: int | None = Field(
        None,
        ge=0,
        le=MAX_CACHE_TTL,
        strict=True,
        description="Answer with an identical capture of the organization up to this many "
        "seconds old (or one running now) instead of capturing again; absent: always capture.",
    )
    force: bool = Field(
        False, strict=True, description="Capture again even when cache_ttl would reuse one."
    )


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
    "/snapshots",
    status_code=202,
    summary="Queue a page capture, or reuse a recent identical one",
    responses=openapi.answers(409),
)
def create_snapshot(
    body: SnapshotCreate,
    principal: UploaderDep,
    services: ServicesDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> dict[str, Any]:
    options = CaptureRequest.model_validate(body.model_dump(exclude=NOT_OPTIONS))
    cached = False
    if body.cache_ttl is None:
        snapshot = services.snapshots.create_page(
            principal.org_id,
            options,
            idempotency_key=idempotency_key,
            callback_url=body.callback_url,
            actor=principal.email,
        )
    elif body.callback_url:
        raise BadRequest(
            "callback_url cannot be combined with cache_ttl: a reused capture has ended already "
            "or belongs to another request",
            field="callback_url",
        )
    else:
        got = services.snapshots.create_cached(
            principal.org_id,
            options,
            CacheAsk(ttl=body.cache_ttl, force=body.force),
            surface="native",
            idempotency_key=idempotency_key,
            callback_url=body.callback_url,
            actor=principal.email,
        )
        snapshot, cached = got.snapshot, got.cached
    # Read back with its job: an in-process worker may already have started it.
    created = services.reads.read(principal.org_id, snapshot.id)
    response.headers["Location"] = f"/api/v1/snapshots/{created.id}"
    response.headers["X-Cache"] = "hit" if cached else "miss"
    if cached and created.status == "success":
        response.status_code = 200  # nothing was queued: the finished capture is the answer
    return {**snapshot_body(created, created.job), "cached": cached}


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
    snapshot = await services.reads.read_live(principal.org_id, snapshot_id)
    return JSONResponse(snapshot_body(snapshot, snapshot.job))


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
        services.holds.archive(principal.org_id, snapshot_id, actor=principal.email, reason=reason)
    )


@router.post("/snapshots/{snapshot_id}/unarchive", summary="Bring an archived snapshot back")
def unarchive_snapshot(
    snapshot_id: str, principal: ManagerDep, services: ServicesDep
) -> dict[str, Any]:
    return snapshot_body(
        services.holds.unarchive(principal.org_id, snapshot_id, actor=principal.email)
    )


@router.put("/snapshots/{snapshot_id}/hold", summary="Place a legal hold")
def hold_snapshot(
    snapshot_id: str, body: Reason, principal: AdminDep, services: ServicesDep
) -> dict[str, Any]:
    return snapshot_body(
        services.holds.hold(
            principal.org_id, snapshot_id, actor=principal.email, reason=body.reason
        )
    )


@router.delete("/snapshots/{snapshot_id}/hold", summary="Lift a legal hold")
def release_snapshot(
    snapshot_id: str, principal: AdminDep, services: ServicesDep
) -> dict[str, Any]:
    return snapshot_body(
        services.holds.release(principal.org_id, snapshot_id, actor=principal.email)
    )


@router.get("/jobs/{job_id}", tags=["jobs"], summary="A job's state")
def get_job(job_id: str, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    return job_body(services.snapshots.get_job(principal.org_id, job_id))


@router.get(
    "/capture",
    summary="Capture and answer with the image bytes",
    response_class=Response,
    responses={**openapi.answers(400, 502), **openapi.files(*openapi.IMAGES, "application/pdf")},
    openapi_extra=openapi.query(
        CaptureRequest,
        exclude=("headers", "cookies"),
        flags=FLAGS,
        text={"geolocation": "latitude,longitude or latitude,longitude,accuracy (metres)"},
        extra=openapi.CACHE_PARAMETERS,
    ),
)
async def capture(
    request: Request,
    principal: UploaderDep,
    services: ServicesDep,
) -> Response:
    fields = fields_from_text(request.query_params.multi_items())
    ask = CacheAsk.from_text(fields)
    options = parse_request(fields)
    got = await services.capture.capture(principal, options, surface="native", cache=ask)
    role = "pdf" if options.format == "pdf" else "image"
    response = await asyncio.to_thread(
        artifact_response, request, services, principal.org_id, got.snapshot.id, role
    )
    response.headers["X-Snapshot-Id"] = got.snapshot.id
    response.headers["X-Cache"] = got.header
    return response
