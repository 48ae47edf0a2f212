"""Librato Metrics API v1 (`/v1`): annotation streams and events, and the alert and service paths
snapshotd does not serve.

Where Librato's documented answer would break the official client, the client wins
(docs/librato.md): `PUT /v1/annotations/:name` answers 200 with the stream rather than 204, and an
event's body also names its stream, because `update_annotation_stream` and `get_annotation` read
`name` from what they get back.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

from fastapi import APIRouter, Request, Response

from snapshotd.errors import BadRequest, NotFound
from snapshotd.http import openapi
from snapshotd.http.deps import ServicesDep
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
from snapshotd.services.annotations import stream_name
from snapshotd.services.records import AnnotationEvent, AnnotationStream
from snapshotd.services.samples import epoch, whole

router = APIRouter(prefix="/v1", tags=["librato"])

DEFAULT_SPAN = 3600


def stream_body(stream: AnnotationStream) -> dict[str, Any]:
    return {"name": stream.name, "display_name": stream.display_name}


def event_body(stream: AnnotationStream, event: AnnotationEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "title": event.title,
        "description": event.description,
        "source": event.source,
        "start_time": event.start_time,
        "end_time": event.end_time,
        "links": event.links,
        "name": stream.name,
    }


def _event_id(value: str) -> int:
    return path_id(value, "event", least=1)


@router.get("/annotations", summary="List annotation streams")
def list_streams(request: Request, services: ServicesDep, principal: Reader) -> dict[str, Any]:
    fields = query_fields(request)
    find = functools.partial(services.annotations.find, principal.org_id)
    return listing(fields, find, "annotations", stream_body)


@router.get(
    "/annotations/{name}",
    summary="An annotation stream, with its events when a time interval is given",
)
def get_stream(
    name: str, request: Request, services: ServicesDep, principal: Reader
) -> dict[str, Any]:
    fields = query_fields(request)
    if not any(k in fields for k in ("start_time", "end_time", "duration")):
        return stream_body(services.annotations.stream(principal.org_id, name))
    start, end = _interval(fields)
    sources = fields.get("sources") or []
    if isinstance(sources, str):
        sources = [sources]
    if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
        raise BadRequest("must be a list of source names or patterns", field="sources")
    stream, events = services.annotations.events(
        principal.org_id, name, start=start, end=end, sources=sources
    )
    by_source: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_source.setdefault(event.source or "unassigned", []).append(event_body(stream, event))
    return {**stream_body(stream), "events": [by_source] if by_source else []}


def _interval(fields: dict[str, Any]) -> tuple[int, int]:
    """Librato's time interval: `start_time`, `end_time` (default now) and `duration`; two of
    the three, or `start_time` alone."""
    now = time.time()
    given = [k for k in ("start_time", "end_time", "duration") if k in fields]
    if len(given) == 3:
        raise BadRequest("give at most two of start_time, end_time and duration", field="duration")
    end = epoch(fields["end_time"], "end_time", now=now) if "end_time" in fields else int(now)
    if "duration" in fields:
        span = whole(fields["duration"], "duration", least=1)
        if "start_time" in fields:
            start = epoch(fields["start_time"], "start_time", now=now)
            return start, start + span
        return end - span, end
    if "start_time" in fields:
        return epoch(fields["start_time"], "start_time", now=now), end
    return end - DEFAULT_SPAN, end


@router.get("/annotations/{name}/{event_id}", summary="An annotation event")
def get_event(name: str, event_id: str, services: ServicesDep, principal: Reader) -> dict[str, Any]:
    stream, event = services.annotations.event(principal.org_id, name, _event_id(event_id))
    return event_body(stream, event)


@router.post(
    "/annotations/{name}",
    summary="Create an annotation event (and its stream, when new)",
    status_code=201,
    openapi_extra=openapi.JSON_OR_FORM,
)
async def create_event(
    name: str, request: Request, services: ServicesDep, principal: Writer
) -> Response:
    body = await read_body(request)
    stream, event = await asyncio.to_thread(
        services.annotations.create_event, principal.org_id, name, body, actor=principal.email
    )
    return created(event_body(stream, event), f"/v1/annotations/{stream.name}/{event.id}")


@router.put(
    "/annotations/{name}",
    summary="Update an annotation stream's display name",
    openapi_extra=openapi.JSON_OR_FORM,
)
async def update_stream(
    name: str, request: Request, services: ServicesDep, principal: Writer
) -> dict[str, Any]:
    body = await read_body(request)
    stream_name(name)
    stream = await asyncio.to_thread(
        services.annotations.update_stream, principal.org_id, name, body, actor=principal.email
    )
    return stream_body(stream)


@router.put(
    "/annotations/{name}/{event_id}",
    summary="Update an annotation event's title, description, end_time or links",
    status_code=204,
    openapi_extra=openapi.JSON_OR_FORM,
)
async def update_event(
    name: str, event_id: str, request: Request, services: ServicesDep, principal: Writer
) -> Response:
    body = await read_body(request)
    await asyncio.to_thread(
        services.annotations.update_event,
        principal.org_id,
        name,
        _event_id(event_id),
        body,
        actor=principal.email,
    )
    return Response(status_code=NO_CONTENT)


@router.delete(
    "/annotations/{name}", summary="Delete an annotation stream and its events", status_code=204
)
def delete_stream(name: str, services: ServicesDep, principal: Writer) -> Response:
    services.annotations.delete_stream(principal.org_id, name, actor=principal.email)
    return Response(status_code=NO_CONTENT)


@router.delete(
    "/annotations/{name}/{event_id}", summary="Delete an annotation event", status_code=204
)
def delete_event(name: str, event_id: str, services: ServicesDep, principal: Writer) -> Response:
    services.annotations.delete_event(
        principal.org_id, name, _event_id(event_id), actor=principal.email
    )
    return Response(status_code=NO_CONTENT)


@router.post(
    "/annotations/{name}/{event_id}/links",
    summary="Add a link to an annotation event",
    status_code=201,
    responses=openapi.answers(422),
    openapi_extra=openapi.JSON_OR_FORM,
)
async def add_link(
    name: str, event_id: str, request: Request, services: ServicesDep, principal: Writer
) -> Response:
    body = await read_body(request)
    number = _event_id(event_id)
    new = await asyncio.to_thread(
        services.annotations.add_link, principal.org_id, name, number, body, actor=principal.email
    )
    return created(new, f"/v1/annotations/{name}/{number}/links/{new['rel']}")


@router.delete(
    "/annotations/{name}/{event_id}/links/{rel}",
    summary="Remove a link from an annotation event",
    status_code=204,
)
def delete_link(
    name: str, event_id: str, rel: str, services: ServicesDep, principal: Writer
) -> Response:
    services.annotations.delete_link(
        principal.org_id, name, _event_id(event_id), rel, actor=principal.email
    )
    return Response(status_code=NO_CONTENT)


# -- not served -----------------------------------------------------------------------------------

_NOT_SERVED = {
    "alerts": "alerts are not available here: snapshotd keeps snapshots and does not alert",
    "services": "notification services are not available here: snapshotd does not alert",
}


def _not_served(kind: str) -> Any:
    def refuse(principal: Reader) -> None:
        raise NotFound(_NOT_SERVED[kind])

    return refuse


for _kind in _NOT_SERVED:
    for _path in (f"/{_kind}", f"/{_kind}/{{rest:path}}"):
        router.add_api_route(
            _path,
            _not_served(_kind),
            methods=["GET", "POST", "PUT", "DELETE"],
            summary=f"Not served: {_kind} answer 404",
            responses=openapi.answers(404),
            include_in_schema=False,
        )
