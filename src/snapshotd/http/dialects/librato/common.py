"""Librato Metrics API v1 (`/v1`): the transport every Librato route shares, and metrics and
measurements in. Reading them back is `reads.py`; spaces, charts, snapshots and jobs are
`spaces.py`.

Wire rules the official client (`librato-metrics` 3.1.0) depends on (docs/librato.md): HTTP Basic
`email:token`; JSON answers with `Content-Type: application/json`; errors as
`{"errors": {"params": {field: [message]}}}` or `{"errors": {"request": [message]}}` with a 4xx,
because the client retries any 5xx forever; paginated lists carry `query.length` = the number
returned, so its paging loop ends.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from snapshotd.errors import (
    BadRequest,
    NotFound,
    PayloadTooLarge,
    SnapshotdError,
    UnsupportedMediaType,
)
from snapshotd.http import openapi
from snapshotd.http.deps import ServicesDep, credentials
from snapshotd.http.dialects.librato import composites
from snapshotd.http.problems import error_headers
from snapshotd.http.wire import parse_json_object, principal_factory
from snapshotd.services.accounts import Principal
from snapshotd.services.records import Metric
from snapshotd.services.samples import (
    MAX_WHOLE,
    MetricChanges,
    MetricProps,
    Sample,
    check_name,
    epoch,
    period,
    sample,
    tag_set,
    whole,
)

router = APIRouter(prefix="/v1", tags=["librato"])

MAX_PAGE = 100
_BRACKETS = re.compile(r"\[([^\]]*)\]")


# -- transport ------------------------------------------------------------------------------------


def render_error(request: Request, error: SnapshotdError) -> Response:
    if error.status == 429:
        body: dict[str, Any] = {"request_time": int(time.time()), "error": error.detail}
    elif error.status >= 500:
        body = {"errors": {"system": [error.detail]}}
    elif error.field:
        body = {"errors": {"params": {error.field: [error.detail]}}}
    else:
        body = {"errors": {"request": [error.detail]}}
    headers = error_headers(error)
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="snapshotd"'
    return JSONResponse(body, status_code=error.status, headers=headers)


def nest(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Form fields with Librato's bracket syntax as nested data: `gauges[0][name]=a` →
    {"gauges": {"0": {"name": "a"}}}, `names[]=a&names[]=b` → {"names": ["a", "b"]}."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        head, _, rest = key.partition("[")
        path = [head, *_BRACKETS.findall("[" + rest)] if rest else [head]
        node: Any = out
        for index, part in enumerate(path):
            last = index == len(path) - 1
            following = path[index + 1] if not last else None
            if part == "" and isinstance(node, list):
                if last:
                    node.append(value)
                    break
                node.append({})
                node = node[-1]
                continue
            if not isinstance(node, dict):
                raise BadRequest(f"cannot read form field {key!r}", field=head)
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, [] if following == "" else {})
    return out


async def read_body(request: Request, *, json_only: bool = False) -> dict[str, Any]:
    """A JSON object, or form fields nested by brackets. A body that looks like JSON is read as
    JSON whatever its Content-Type says (curl's `-d '{…}'` sends a form content type)."""
    raw = await request.body()
    content_type = request.headers.get("content-type", "")
    stripped = raw.lstrip()
    if not raw:  # no body at all; blanks go on to be refused as JSON or read as a form
        return {}
    if stripped[:1] in (b"{", b"[") or "json" in content_type:
        return parse_json_object(raw)
    if json_only:
        raise UnsupportedMediaType("Content type was not application/json")
    try:
        pairs = parse_qsl(raw.decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise BadRequest("the form body is not UTF-8") from None
    return nest(pairs)


def query_fields(request: Request) -> dict[str, Any]:
    return nest(list(request.query_params.multi_items()))


requires = principal_factory(lambda request: credentials(request, basic=True))
Reader = Annotated[Principal, Depends(requires("view"))]
Writer = Annotated[Principal, Depends(requires("upload"))]


def path_id(value: str, what: str, *, least: int = 0) -> int:
    """A numeric id from the path; one that is not a number in range names nothing (404)."""
    if not (value.isascii() and value.isdigit()) or not least <= int(value) <= MAX_WHOLE:
        raise NotFound(f"no {what} {value}")
    return int(value)


def page(fields: Mapping[str, Any]) -> tuple[int, int, bool]:
    offset = whole(fields.get("offset", 0), "offset")
    length = whole(fields.get("length", MAX_PAGE), "length", most=MAX_PAGE)
    sort = fields.get("sort", "asc")
    if sort not in ("asc", "desc"):
        raise BadRequest("must be asc or desc", field="sort")
    if fields.get("orderby", "name") != "name":
        raise BadRequest("only name is supported", field="orderby")
    return offset, length, sort == "desc"


def listing(
    fields: Mapping[str, Any],
    find: Callable[..., tuple[Sequence[Any], int, int]],
    key: str,
    body: Callable[[Any], dict[str, Any]],
) -> dict[str, Any]:
    """One page of a list route in Librato's shape: the items `find` returns (given the name
    filter and the page), under `key`, and the `query` block that counts them."""
    offset, length, desc = page(fields)
    name = str(fields.get("name", ""))
    items, found, total = find(name=name, offset=offset, length=length, desc=desc)
    query = {"offset": offset, "length": len(items), "found": found, "total": total}
    return {"query": query, key: [body(item) for item in items]}


def created(body: dict[str, Any], location: str) -> JSONResponse:
    return JSONResponse(body, status_code=201, headers={"Location": location})


NO_CONTENT = 204


# -- metrics --------------------------------------------------------------------------------------


def metric_body(metric: Metric) -> dict[str, Any]:
    body = {
        "name": metric.name,
        "display_name": metric.display_name,
        "description": metric.description,
        "period": metric.period,
        "type": metric.type,
        "attributes": metric.attributes,
        "source_lag": None,
    }
    if metric.type == "composite":
        body["composite"] = metric.composite
    return body


@router.get("/metrics", summary="List metrics")
def list_metrics(request: Request, services: ServicesDep, principal: Reader) -> dict[str, Any]:
    fields = query_fields(request)
    if fields.get("compose"):
        return composites.legacy_answer(services, principal.org_id, fields)
    find = functools.partial(services.metrics.find, principal.org_id)
    return listing(fields, find, "metrics", metric_body)


@router.post(
    "/metrics",
    summary="Submit gauges and counters (legacy source format)",
    openapi_extra=openapi.JSON_OR_FORM,
)
async def post_metrics(request: Request, services: ServicesDep, principal: Writer) -> Response:
    body = await read_body(request)
    samples, props = _legacy_samples(body, services.settings.max_measurements_per_request)
    await asyncio.to_thread(services.metrics.submit, principal.org_id, samples, props)
    return Response(status_code=200)


def _entries(raw: Any, where: str) -> list[tuple[str, dict[str, Any]]]:
    """`gauges` as a list, or as an object keyed by metric name (or by anything, with `name`)."""
    if raw is None or raw == "":
        return []
    if isinstance(raw, list):
        items = [(str(i), item) for i, item in enumerate(raw)]
    elif isinstance(raw, dict):
        items = list(raw.items())
    else:
        raise BadRequest("must be a list or an object of measurements", field=where)
    out = []
    for key, item in items:
        if not isinstance(item, dict):
            raise BadRequest("each measurement must be an object", field=f"{where}.{key}")
        out.append((str(item.get("name", key)), item))
    return out


def _legacy_samples(
    body: Mapping[str, Any], most: int
) -> tuple[list[Sample], dict[str, MetricProps]]:
    now = time.time()
    default_time = body.get("measure_time")
    default_source = body.get("source")
    samples: list[Sample] = []
    props: dict[str, MetricProps] = {}
    for kind in ("gauges", "counters"):
        entries = _entries(body.get(kind), kind)
        if len(samples) + len(entries) > most:
            raise PayloadTooLarge(f"at most {most} measurements in one request")
        for index, (name, item) in enumerate(entries):
            where = f"{kind}.{index}"
            source = item.get("source", default_source)
            tags = tag_set({"source": source}, f"{where}.source") if source else ()
            raw_time = item.get("measure_time", default_time)
            when = int(now) if raw_time in (None, "") else epoch(raw_time, f"{where}.measure_time")
            samples.append(sample(name, item, tags, when, where))
            if name.lower() not in props:
                props[name.lower()] = _props(item, kind[:-1], where)
    if not samples:
        raise BadRequest("send at least one gauge or counter", field="gauges")
    return samples, props


def _props(item: Mapping[str, Any], kind: str, where: str) -> MetricProps:
    attributes = item.get("attributes")
    return MetricProps(
        type=kind,
        period=period(item.get("period"), f"{where}.period"),
        display_name=item.get("display_name")
        if isinstance(item.get("display_name"), str)
        else None,
        description=item.get("description") if isinstance(item.get("description"), str) else None,
        attributes=attributes if isinstance(attributes, dict) else {},
    )


@router.put(
    "/metrics",
    summary="Update several metrics",
    status_code=204,
    openapi_extra=openapi.JSON_OR_FORM,
)
async def put_metrics(request: Request, services: ServicesDep, principal: Writer) -> Response:
    body = await read_body(request)
    names = _names(body)
    await asyncio.to_thread(
        services.metrics.put_many, principal.org_id, names, metric_changes(body)
    )
    return Response(status_code=NO_CONTENT)


@router.delete(
    "/metrics",
    summary="Delete several metrics",
    status_code=204,
    openapi_extra=openapi.JSON_OR_FORM,
)
async def delete_metrics(request: Request, services: ServicesDep, principal: Writer) -> Response:
    body = await read_body(request) or query_fields(request)
    await asyncio.to_thread(services.metrics.delete, principal.org_id, _names(body))
    return Response(status_code=NO_CONTENT)


def metric_changes(body: Mapping[str, Any]) -> MetricChanges:
    """A metric update's body as the properties it sets; a property absent from the body is
    kept, and one sent as null is cleared."""
    given: dict[str, Any] = {}
    for key in ("display_name", "description"):
        if key in body:
            value = body[key]
            if value is not None and not isinstance(value, str):
                raise BadRequest("must be a string", field=key)
            given[key] = value
    if "period" in body:
        given["period"] = period(body["period"])
    if "attributes" in body:
        if not isinstance(body["attributes"], dict):
            raise BadRequest("must be an object", field="attributes")
        given["attributes"] = body["attributes"]
    kind = body.get("type")
    return MetricChanges(type=kind if isinstance(kind, str) else None, **given)


def _names(body: Mapping[str, Any]) -> list[str]:
    names = body.get("names")
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise BadRequest("give names as a list, or one name pattern", field="names")
    return names


@router.put(
    "/metrics/{name}",
    summary="Create or update a metric",
    status_code=204,
    responses={201: {"description": "Created"}},
    openapi_extra=openapi.JSON_OR_FORM,
)
async def put_metric(
    name: str, request: Request, services: ServicesDep, principal: Writer
) -> Response:
    body = await read_body(request)
    changes = metric_changes(body)
    if body.get("type") == "composite" or body.get("composite"):
        made = await asyncio.to_thread(
            services.composites.put, principal.org_id, name, body.get("composite"), changes
        )
    else:
        made = await asyncio.to_thread(services.metrics.put, principal.org_id, name, changes)
    if made:
        metric = await asyncio.to_thread(services.metrics.get, principal.org_id, name)
        return created(metric_body(metric), f"/v1/metrics/{metric.name}")
    return Response(status_code=NO_CONTENT)


@router.delete("/metrics/{name}", summary="Delete a metric and its measurements", status_code=204)
async def delete_metric(name: str, services: ServicesDep, principal: Writer) -> Response:
    check_name(name)
    if not await asyncio.to_thread(services.metrics.delete, principal.org_id, [name]):
        raise NotFound(f"no metric named {name}")
    return Response(status_code=NO_CONTENT)


# -- measurements (tagged) ------------------------------------------------------------------------


@router.post(
    "/measurements",
    summary="Submit tagged measurements",
    status_code=202,
    responses=openapi.answers(415),
    openapi_extra=openapi.JSON_BODY,
)
async def post_measurements(request: Request, services: ServicesDep, principal: Writer) -> Response:
    body = await read_body(request, json_only=True)
    samples, props = _tagged_samples(body, services.settings.max_measurements_per_request)
    await asyncio.to_thread(services.metrics.submit, principal.org_id, samples, props)
    return Response(status_code=202)


def _tagged_samples(
    body: Mapping[str, Any], most: int
) -> tuple[list[Sample], dict[str, MetricProps]]:
    items = body.get("measurements")
    if not isinstance(items, list) or not items:
        raise BadRequest("must be a list of at least one measurement", field="measurements")
    if len(items) > most:
        raise PayloadTooLarge(f"at most {most} measurements in one request")
    now = time.time()
    top_tags = tag_set(body.get("tags"), "tags")
    top_time = body.get("time")
    default_when = int(now) if top_time in (None, "") else epoch(top_time, "time", now=now)
    known_tags: dict[str, Any] = {}
    samples, props = [], {}
    for index, item in enumerate(items):
        where = f"measurements.{index}"
        if not isinstance(item, dict):
            raise BadRequest("must be an object", field=where)
        tags = top_tags
        if item.get("tags") is not None:
            # Clients repeat one tag set on every item: validate each distinct set once.
            key = json.dumps(item["tags"], sort_keys=True, default=str)
            if key not in known_tags:
                known_tags[key] = tag_set(item["tags"], f"{where}.tags")
            tags = known_tags[key]
        if not tags:
            raise BadRequest("every measurement needs tags (here or at the top)", field=where)
        raw_time = item.get("time")
        when = default_when if raw_time is None else epoch(raw_time, f"{where}.time", now=now)
        samples.append(sample(item.get("name"), item, tags, when, where))
        if samples[-1].name.lower() not in props:
            props[samples[-1].name.lower()] = _props(item, "gauge", where)
    return samples, props
