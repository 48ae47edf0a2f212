"""Ironclad Clickwrap REST API v1.1 (`/v1.1`): snapshot locations, their captures and uploads.

Choices where the published definitions are silent (docs/clickwrap.md): `Authorization: Bearer`;
lists use Clickwrap's Collection envelope (`page`, `per_page` up to 100, default 25); creating or
cloning a location answers 201 with the location itself, as published, other single objects come
in `{"data": …}`; Clickwrap's integer `account`, `site` and user fields are stable numbers derived
from snapshotd's string ids; errors are `{"error": {"status", "message", "field"?}}` since no
error body is published; `snapshot_download_url` is a signed link valid for an hour (never longer
than the snapshot).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from snapshotd.errors import BadRequest, SnapshotdError
from snapshotd.http import openapi
from snapshotd.http.deps import ServicesDep, credentials
from snapshotd.http.dialects.clickwrap.bodies import collection, location_body, snapshot_body
from snapshotd.http.problems import error_headers
from snapshotd.http.wire import add_signed_download, json_object, parse_date, principal_factory
from snapshotd.services import location_uploads
from snapshotd.services.accounts import Principal
from snapshotd.services.locations import CAPTURE_SETTINGS, LocationFields
from snapshotd.services.records import Snapshot

router = APIRouter(prefix="/v1.1", tags=["clickwrap"])

_TEXT_FIELDS = (
    "key",
    "name",
    "description",
    "location_type",
    "capture_url",
    "platform",
    "frequency",
    "application_id",
    "application_name",
    "mobile_os",
    "webhook_url",
)


def render_error(request: Request, error: SnapshotdError) -> Response:
    body: dict[str, Any] = {"status": error.status, "message": error.detail}
    if error.field:
        body["field"] = error.field
    return JSONResponse({"error": body}, status_code=error.status, headers=error_headers(error))


requires = principal_factory(lambda request: credentials(request, basic=False))
Viewer = Annotated[Principal, Depends(requires("view"))]
Uploader = Annotated[Principal, Depends(requires("upload"))]
Manager = Annotated[Principal, Depends(requires("manage"))]


def _page(request: Request) -> tuple[int, int]:
    values = []
    for name, default, most in (("page", 1, 1_000_000), ("per_page", 25, 100)):
        raw = request.query_params.get(name, str(default))
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= most:
            raise BadRequest(f"{name} must be a whole number from 1 to {most}", field=name)
        values.append(int(raw))
    return values[0], values[1]


def _fields(body: dict[str, Any]) -> LocationFields:
    fields = LocationFields()
    for name in _TEXT_FIELDS:
        value = body.get(name)
        if value is not None:
            if not isinstance(value, str):
                raise BadRequest(f"{name} must be a string", field=name)
            setattr(fields, name, value.strip())
    capture = {k: body[k] for k in CAPTURE_SETTINGS if body.get(k) is not None}
    viewport = body.get("viewport")
    if isinstance(viewport, dict):
        capture.update({k: viewport[k] for k in ("width", "height") if k in viewport})
    fields.capture = capture
    threshold = body.get("change_threshold")
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise BadRequest("change_threshold must be a number", field="change_threshold")
        fields.change_threshold = float(threshold)
    return fields


# -- locations ------------------------------------------------------------------------------------


@router.get("/locations", summary="Snapshot locations")
def list_locations(request: Request, services: ServicesDep, principal: Viewer) -> dict[str, Any]:
    page, per_page = _page(request)
    items, total = services.locations.find(principal.org_id, page=page, per_page=per_page)
    return collection([location_body(i) for i in items], page, per_page, total)


@router.post(
    "/locations",
    status_code=201,
    summary="Create a snapshot location",
    responses=openapi.answers(409),
    openapi_extra=openapi.JSON_BODY,
)
async def create_location(
    request: Request, services: ServicesDep, principal: Manager
) -> dict[str, Any]:
    fields = _fields(await json_object(request))
    location = await asyncio.to_thread(
        services.locations.create, principal.org_id, fields, actor=principal.email
    )
    return location_body(location)


@router.get("/locations/{location_id}", summary="A snapshot location")
def get_location(location_id: str, services: ServicesDep, principal: Viewer) -> dict[str, Any]:
    return {"data": location_body(services.locations.get(principal.org_id, location_id))}


@router.patch(
    "/locations/{location_id}",
    summary="Update a snapshot location",
    responses=openapi.answers(409),
    openapi_extra=openapi.JSON_BODY,
)
async def update_location(
    location_id: str, request: Request, services: ServicesDep, principal: Manager
) -> dict[str, Any]:
    fields = _fields(await json_object(request))
    location = await asyncio.to_thread(
        services.locations.update, principal.org_id, location_id, fields, actor=principal.email
    )
    return {"data": location_body(location)}


@router.delete("/locations/{location_id}", status_code=204, summary="Delete a draft location")
def delete_location(location_id: str, services: ServicesDep, principal: Manager) -> Response:
    services.locations.delete(principal.org_id, location_id, actor=principal.email)
    return Response(status_code=204)


@router.post("/locations/{location_id}/publish", summary="Publish a location")
def publish_location(location_id: str, services: ServicesDep, principal: Manager) -> dict[str, Any]:
    location = services.locations.publish(principal.org_id, location_id, actor=principal.email)
    return {"data": location_body(location)}


@router.post(
    "/locations/{location_id}/archive",
    summary="Archive a published location",
    openapi_extra=openapi.JSON_BODY,
)
async def archive_location(
    location_id: str, request: Request, services: ServicesDep, principal: Manager
) -> dict[str, Any]:
    reason = (await json_object(request)).get("archived_reason") or ""
    if not isinstance(reason, str):
        raise BadRequest("archived_reason must be a string", field="archived_reason")
    location = await asyncio.to_thread(
        services.locations.archive,
        principal.org_id,
        location_id,
        actor=principal.email,
        reason=reason,
    )
    return {"data": location_body(location)}


@router.post("/locations/{location_id}/clone", status_code=201, summary="Clone a location")
def clone_location(location_id: str, services: ServicesDep, principal: Manager) -> dict[str, Any]:
    return location_body(
        services.locations.clone(principal.org_id, location_id, actor=principal.email)
    )


# -- snapshots ------------------------------------------------------------------------------------


@router.post("/locations/{location_id}/snapshots/capture", summary="Trigger a capture")
def trigger_capture(
    location_id: str, request: Request, services: ServicesDep, principal: Uploader
) -> dict[str, Any]:
    snapshot = services.locations.capture(principal.org_id, location_id, actor=principal.email)
    return {"data": snapshot_body(request, services, snapshot)}


@router.post(
    "/locations/{location_id}/snapshots/upload",
    status_code=201,
    summary="Upload a manually captured snapshot (multipart `file`, or the image as the body)",
    openapi_extra=openapi.UPLOAD_BODY,
)
async def upload_snapshot(
    location_id: str, request: Request, services: ServicesDep, principal: Uploader
) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "")
    fields: dict[str, str] = {}
    if content_type.startswith("multipart/form-data"):
        async with request.form(max_part_size=services.settings.max_upload_bytes) as form:
            upload = form.get("file") or form.get("image")
            if upload is None or isinstance(upload, str):
                raise BadRequest("send the image in the form field `file`", field="file")
            data = await upload.read()
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
    else:
        data = await request.body()
        fields = dict(request.query_params)
    captured = fields.pop("captured_time", None)
    when: datetime | None = parse_date(captured, "captured_time") if captured else None
    snapshot = await asyncio.to_thread(
        location_uploads.upload,
        services.locations,
        principal.org_id,
        location_id,
        data,
        actor=principal.email,
        captured_at=when,
        metadata=fields,
    )
    return {"data": snapshot_body(request, services, snapshot)}


def _pdf(snapshot: Snapshot, data: bytes) -> Response:
    disposition = f'inline; filename="{snapshot.id}-record.pdf"'
    headers = {"Content-Disposition": disposition, "Cache-Control": "private, no-cache"}
    return Response(data, media_type="application/pdf", headers=headers)


@router.get(
    "/locations/{location_id}/snapshots/record/{timestamp}",
    summary="The PDF record of the snapshot in force at a moment",
    response_class=Response,
    responses=openapi.files("application/pdf"),
)
def record_at(
    location_id: str, timestamp: str, services: ServicesDep, principal: Viewer
) -> Response:
    moment = parse_date(timestamp, "timestamp")
    snapshot, data = services.evidence.record(principal.org_id, location_id, at=moment)
    return _pdf(snapshot, data)


@router.get(
    "/locations/{location_id}/snapshots/{snapshot_id}/record",
    summary="The PDF record of a snapshot",
    response_class=Response,
    responses=openapi.files("application/pdf"),
)
def record_of(
    location_id: str, snapshot_id: str, services: ServicesDep, principal: Viewer
) -> Response:
    snapshot, data = services.evidence.record(
        principal.org_id, location_id, snapshot_id=snapshot_id
    )
    return _pdf(snapshot, data)


@router.get("/locations/{location_id}/snapshots", summary="A location's snapshots")
def list_snapshots(
    location_id: str, request: Request, services: ServicesDep, principal: Viewer
) -> dict[str, Any]:
    page, per_page = _page(request)
    items, total = services.locations.snapshots_of(
        principal.org_id, location_id, page=page, per_page=per_page
    )
    bodies = [snapshot_body(request, services, s) for s in items]
    return collection(bodies, page, per_page, total)


@router.get("/locations/{location_id}/snapshots/{snapshot_id}", summary="A snapshot")
def get_snapshot(
    location_id: str, snapshot_id: str, request: Request, services: ServicesDep, principal: Viewer
) -> dict[str, Any]:
    snapshot = services.locations.snapshot(principal.org_id, location_id, snapshot_id)
    return {"data": snapshot_body(request, services, snapshot)}


@router.post(
    "/locations/{location_id}/snapshots/{snapshot_id}/archive",
    summary="Archive one",
    openapi_extra=openapi.JSON_BODY,
)
async def archive_snapshot(
    location_id: str, snapshot_id: str, request: Request, services: ServicesDep, principal: Manager
) -> dict[str, Any]:
    reason = (await json_object(request)).get("archived_reason") or ""
    if not isinstance(reason, str):
        raise BadRequest("archived_reason must be a string", field="archived_reason")
    await asyncio.to_thread(services.locations.snapshot, principal.org_id, location_id, snapshot_id)
    await asyncio.to_thread(
        services.holds.archive,
        principal.org_id,
        snapshot_id,
        actor=principal.email,
        reason=reason,
    )
    return {"data": {"id": snapshot_id}}


add_signed_download(
    router,
    "/downloads/{snapshot_id}",
    summary="A snapshot's image through its signed link",
    **openapi.signed_link(*openapi.IMAGES),
)
