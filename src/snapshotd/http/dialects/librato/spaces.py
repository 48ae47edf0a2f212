"""Librato Metrics API v1 (`/v1`): spaces, charts, chart snapshots and jobs.

Snapshot and job ids are snapshotd's own string ids (`snp_…`, `job_…`); clients follow `href`,
`job_href` and `image_href` rather than build URLs. `image_href` is a signed link that works
without credentials (paste it into chat) until the snapshot expires.
"""

from __future__ import annotations

import asyncio
import functools
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from snapshotd.errors import NotFound
from snapshotd.http import openapi
from snapshotd.http.deps import Services, ServicesDep, public_base
from snapshotd.http.dialects.librato.common import (
    NO_CONTENT,
    Reader,
    Writer,
    created,
    listing,
    path_id,
    query_fields,
    read_body,
)
from snapshotd.http.wire import add_signed_download
from snapshotd.services.records import Chart, Job, Snapshot, Space
from snapshotd.timestamps import iso

router = APIRouter(prefix="/v1", tags=["librato"])

_JOB_STATES = {"queued": "queued", "working": "working", "complete": "complete", "failed": "failed"}
_IMAGE_LINK_LIFETIME = 10 * 365 * 86400  # capped by the snapshot's own expiry


# -- spaces ---------------------------------------------------------------------------------------


def space_body(space: Space) -> dict[str, Any]:
    return {"id": space.id, "name": space.name}


@router.get("/spaces", summary="List spaces")
def list_spaces(request: Request, services: ServicesDep, principal: Reader) -> dict[str, Any]:
    fields = query_fields(request)
    find = functools.partial(services.spaces.find, principal.org_id)
    return listing(fields, find, "spaces", space_body)


@router.post(
    "/spaces",
    summary="Create a space",
    status_code=201,
    responses=openapi.answers(422),
    openapi_extra=openapi.JSON_OR_FORM,
)
async def create_space(request: Request, services: ServicesDep, principal: Writer) -> Response:
    body = await read_body(request)
    space = await asyncio.to_thread(
        services.spaces.create, principal.org_id, body.get("name"), actor=principal.email
    )
    return created(space_body(space), f"/v1/spaces/{space.id}")


@router.get("/spaces/{space_id}", summary="A space and the ids of its charts")
def get_space(space_id: str, services: ServicesDep, principal: Reader) -> dict[str, Any]:
    space, charts = services.spaces.get(principal.org_id, path_id(space_id, "space"))
    return {**space_body(space), "charts": [{"id": c} for c in charts]}


@router.put(
    "/spaces/{space_id}",
    summary="Rename a space",
    status_code=204,
    responses=openapi.answers(422),
    openapi_extra=openapi.JSON_OR_FORM,
)
async def update_space(
    space_id: str, request: Request, services: ServicesDep, principal: Writer
) -> Response:
    body = await read_body(request)
    await asyncio.to_thread(
        services.spaces.rename,
        principal.org_id,
        path_id(space_id, "space"),
        body.get("name"),
        actor=principal.email,
    )
    return Response(status_code=NO_CONTENT)


@router.delete("/spaces/{space_id}", summary="Delete a space and its charts", status_code=204)
def delete_space(space_id: str, services: ServicesDep, principal: Writer) -> Response:
    services.spaces.delete(principal.org_id, path_id(space_id, "space"), actor=principal.email)
    return Response(status_code=NO_CONTENT)


# -- charts ---------------------------------------------------------------------------------------


def chart_body(chart: Chart) -> dict[str, Any]:
    definition = chart.definition
    return {
        "id": chart.id,
        "name": chart.name,
        "type": chart.type,
        "streams": definition.get("streams", []),
        "min": definition.get("min"),
        "max": definition.get("max"),
        "label": definition.get("label"),
        "related_space": definition.get("related_space"),
        "thresholds": definition.get("thresholds"),
        "use_log_yaxis": definition.get("use_log_yaxis"),
        "use_last_value": definition.get("use_last_value"),
        "annotations": definition.get("annotations", []),
    }


@router.get("/spaces/{space_id}/charts", summary="The charts of a space (a bare JSON array)")
def list_charts(space_id: str, services: ServicesDep, principal: Reader) -> list[dict[str, Any]]:
    charts = services.spaces.charts(principal.org_id, path_id(space_id, "space"))
    return [chart_body(c) for c in charts]


@router.post(
    "/spaces/{space_id}/charts",
    summary="Create a chart",
    status_code=201,
    openapi_extra=openapi.JSON_OR_FORM,
)
async def create_chart(
    space_id: str, request: Request, services: ServicesDep, principal: Writer
) -> Response:
    body = await read_body(request)
    chart = await asyncio.to_thread(
        services.spaces.create_chart,
        principal.org_id,
        path_id(space_id, "space"),
        body,
        actor=principal.email,
    )
    return created(chart_body(chart), f"/v1/spaces/{chart.space_id}/charts/{chart.id}")


@router.get("/spaces/{space_id}/charts/{chart_id}", summary="A chart")
def get_chart(
    space_id: str, chart_id: str, services: ServicesDep, principal: Reader
) -> dict[str, Any]:
    chart = services.spaces.chart(
        principal.org_id, path_id(space_id, "space"), path_id(chart_id, "chart")
    )
    return chart_body(chart)


@router.put(
    "/spaces/{space_id}/charts/{chart_id}",
    summary="Update a chart",
    openapi_extra=openapi.JSON_OR_FORM,
)
async def update_chart(
    space_id: str, chart_id: str, request: Request, services: ServicesDep, principal: Writer
) -> dict[str, Any]:
    body = await read_body(request)
    chart = await asyncio.to_thread(
        services.spaces.update_chart,
        principal.org_id,
        path_id(space_id, "space"),
        path_id(chart_id, "chart"),
        body,
        actor=principal.email,
    )
    return chart_body(chart)


@router.delete("/spaces/{space_id}/charts/{chart_id}", summary="Delete a chart", status_code=204)
def delete_chart(
    space_id: str, chart_id: str, services: ServicesDep, principal: Writer
) -> Response:
    services.spaces.delete_chart(
        principal.org_id,
        path_id(space_id, "space"),
        path_id(chart_id, "chart"),
        actor=principal.email,
    )
    return Response(status_code=NO_CONTENT)


# -- snapshots and jobs ---------------------------------------------------------------------------


def snapshot_body(request: Request, services: Services, snapshot: Snapshot) -> dict[str, Any]:
    base = public_base(request, services)
    image_href = None
    if snapshot.status == "success":
        expires, signature = services.downloads.sign(
            snapshot, "image", lifetime=_IMAGE_LINK_LIFETIME
        )
        image_href = (
            f"{base}/v1/snapshots/{snapshot.id}/image.png?expires={expires}&sig={signature}"
        )
    options = snapshot.options
    end = datetime.fromtimestamp(int(options["end_time"]), UTC)
    return {
        "id": snapshot.id,
        "href": f"{base}/v1/snapshots/{snapshot.id}",
        "job_href": f"{base}/v1/jobs/{snapshot.job_id}",
        "image_href": image_href,
        "duration": options["duration"],
        "end_time": iso(end),
        "created_at": iso(snapshot.created_at),
        "updated_at": iso(snapshot.completed_at or snapshot.created_at),
        "subject": {
            "chart": {"id": options["chart_id"], "type": options["chart"]["type"], "sources": ["*"]}
        },
    }


@router.post(
    "/snapshots",
    summary="Snapshot a chart over a time window (rendered by a job)",
    status_code=202,
    openapi_extra=openapi.JSON_OR_FORM,
)
async def create_snapshot(request: Request, services: ServicesDep, principal: Writer) -> Response:
    body = await read_body(request)
    subject = body.get("subject")
    chart = subject.get("chart") if isinstance(subject, dict) else None
    if not isinstance(chart, dict):
        chart = {}
    snapshot = await asyncio.to_thread(
        services.chart_snapshots.create,
        principal.org_id,
        chart.get("id"),
        chart_type=chart.get("type"),
        duration=body.get("duration"),
        end_time=body.get("end_time"),
        annotations=chart.get("annotations"),
        surface="librato",
        actor=principal.email,
    )
    answer = await asyncio.to_thread(snapshot_body, request, services, snapshot)
    return JSONResponse(
        answer, status_code=202, headers={"Location": f"/v1/snapshots/{snapshot.id}"}
    )


def _chart_snapshot(services: Services, org_id: str, snapshot_id: str) -> Snapshot:
    snapshot = services.snapshots.get(org_id, snapshot_id)
    if snapshot.kind != "chart":
        raise NotFound(f"no snapshot {snapshot_id}")
    return snapshot


@router.get("/snapshots/{snapshot_id}", summary="A chart snapshot")
def get_snapshot(
    snapshot_id: str, request: Request, services: ServicesDep, principal: Reader
) -> dict[str, Any]:
    snapshot = _chart_snapshot(services, principal.org_id, snapshot_id)
    return snapshot_body(request, services, snapshot)


add_signed_download(
    router,
    "/snapshots/{snapshot_id}/image.png",
    summary="A chart snapshot's PNG (signed link)",
    **openapi.signed_link("image/png"),
)


def job_body(job: Job) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": job.id,
        "state": _JOB_STATES.get(job.state, job.state),
        "progress": float(job.progress),
    }
    if job.state == "failed":
        body["errors"] = {"job": [job.error or "failed"]}
    return body


@router.get("/jobs/{job_id}", summary="The state of a background job")
def get_job(job_id: str, services: ServicesDep, principal: Reader) -> dict[str, Any]:
    return job_body(services.snapshots.get_job(principal.org_id, job_id))
