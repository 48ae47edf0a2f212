"""Librato Metrics API v1 (`/v1`): reading measurements back.

`GET /v1/metrics/:name` answers the legacy view (series by source, optional summaries across time
and sources); `GET /v1/measurements/:name` the tagged view (series by tag set, optional grouping by
tags). Both read roll-ups from `Metrics.read` and shape them here; a stored composite metric
is evaluated instead (`composites.py`), and so is `GET /v1/measurements?compose=…`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request

from snapshotd.errors import BadRequest
from snapshotd.http import openapi
from snapshotd.http.deps import ServicesDep
from snapshotd.http.dialects.librato import composites
from snapshotd.http.dialects.librato.common import Reader, metric_body, query_fields
from snapshotd.services.metrics import SeriesPoints
from snapshotd.services.samples import epoch, point_value, whole

router = APIRouter(prefix="/v1", tags=["librato"])


@router.get("/metrics/{name}", summary="A metric, with measurements when a time range is given")
def get_metric(
    name: str, request: Request, services: ServicesDep, principal: Reader
) -> dict[str, Any]:
    fields = query_fields(request)
    wants_data = any(
        k in fields for k in ("start_time", "end_time", "count", "resolution", "duration")
    )
    if not wants_data:
        return metric_body(services.metrics.get(principal.org_id, name))
    start, end = _window(fields, default_span=3600)
    resolution = whole(fields.get("resolution", 1), "resolution") or 1
    wanted = _source_filter(fields)
    metric, series = services.metrics.read(
        principal.org_id, name, start=start, end=end, resolution=resolution, tags=wanted
    )
    if metric.type == "composite":
        data = composites.stored_legacy(services, principal.org_id, metric, start, end, resolution)
        return {**metric_body(metric), **data}
    by_source: dict[str, list[SeriesPoints]] = {}
    for s in series:
        by_source.setdefault(s.tags.get("source", "unassigned"), []).append(s)
    merged = {source: _merge(group) for source, group in by_source.items()}
    count = whole(fields["count"], "count") if "count" in fields else None
    if count is not None:
        take_first = "start_time" in fields
        merged = {s: (p[:count] if take_first else p[-count:]) for s, p in merged.items()}
    measurements = _legacy_measurements(merged, fields, start)
    return {**metric_body(metric), "resolution": resolution, "measurements": measurements}


def _legacy_measurements(
    merged: dict[str, list[tuple[int, int, float, float, float]]],
    fields: Mapping[str, Any],
    start: int,
) -> dict[str, list[dict[str, Any]]]:
    if _flag(fields.get("summarize_time")):
        merged = {s: _merge_times(points, start) for s, points in merged.items() if points}
    group_by = fields.get("group_by")
    if group_by is not None and group_by not in ("min", "max", "mean", "sum", "count"):
        raise BadRequest("must be one of min, max, mean, sum, count", field="group_by")
    out = {source: [_legacy_point(p) for p in points] for source, points in merged.items()}
    if group_by or _flag(fields.get("summarize_sources")):
        how = {"mean": "average", None: "average"}.get(group_by, group_by)
        by_time: dict[int, list[float]] = {}
        for points in merged.values():
            for p in points:
                by_time.setdefault(p[0], []).append(p[2] / p[1])
        out_all = []
        for when in sorted(by_time):
            values = by_time[when]
            value = {
                "sum": sum(values),
                "min": min(values),
                "max": max(values),
                "count": float(len(values)),
            }.get(how or "", sum(values) / len(values))
            out_all.append({"measure_time": when, "value": value, "count": len(values)})
        breakout = group_by is None and _flag(fields.get("breakout_sources", "true"))
        out = {**(out if breakout else {}), "all": out_all}
    return out


def _legacy_point(point: tuple[int, int, float, float, float]) -> dict[str, Any]:
    when, count, total, low, high = point
    return {
        "measure_time": when,
        "value": total / count,
        "count": count,
        "sum": total,
        "min": low,
        "max": high,
    }


def _merge(group: list[SeriesPoints]) -> list[tuple[int, int, float, float, float]]:
    if len(group) == 1:
        return group[0].points
    by_time: dict[int, tuple[int, int, float, float, float]] = {}
    for s in group:
        for p in s.points:
            q = by_time.get(p[0])
            by_time[p[0]] = p if q is None else _add(q, p)
    return [by_time[t] for t in sorted(by_time)]


def _merge_times(points: list[tuple[int, int, float, float, float]], start: int):
    total = points[0]
    for p in points[1:]:
        total = _add(total, p)
    return [(start, *total[1:])]


def _add(a: tuple[int, int, float, float, float], b: tuple[int, int, float, float, float]):
    return (a[0], a[1] + b[1], a[2] + b[2], min(a[3], b[3]), max(a[4], b[4]))


def _flag(value: Any) -> bool:
    return str(value).lower() in ("true", "1", "yes")


def _source_filter(fields: Mapping[str, Any]) -> dict[str, list[str]]:
    sources = fields.get("sources")
    if isinstance(sources, list | dict):
        values = list(sources.values()) if isinstance(sources, dict) else sources
        return {"source": [str(v) for v in values]}
    source = fields.get("source")
    if isinstance(source, str) and source not in ("", "*"):
        return {"source": [source]}
    return {}


def _window(fields: Mapping[str, Any], *, default_span: int | None) -> tuple[int, int]:
    """start and end from `start_time`, `end_time` (default now) and `duration`."""
    given = [k for k in ("start_time", "end_time", "duration") if fields.get(k) not in (None, "")]
    if len(given) == 3:
        raise BadRequest("give at most two of start_time, end_time and duration", field="duration")
    now = int(time.time())
    end = epoch(fields["end_time"], "end_time") if "end_time" in given else now
    if "start_time" in given:
        start = epoch(fields["start_time"], "start_time")
    elif "duration" in given:
        start = end - whole(fields["duration"], "duration")
    elif default_span is not None:
        start = end - default_span
    else:
        raise BadRequest("give start_time or duration", field="start_time")
    if start > end:
        raise BadRequest("must not be after end_time", field="start_time")
    return start, end


_SUMMARIES = ("mean", "sum", "min", "max", "count", "derivative", "all")


@router.get("/measurements/{name}", summary="Tagged series of a metric over a time range")
def get_measurements(
    name: str, request: Request, services: ServicesDep, principal: Reader
) -> dict[str, Any]:
    fields = query_fields(request)
    if "tags_search" in fields:
        raise BadRequest(
            "tags_search is not supported; use tags[name]=pattern", field="tags_search"
        )
    if fields.get("resolution") in (None, ""):
        raise BadRequest("is required (seconds)", field="resolution")
    resolution = whole(fields["resolution"], "resolution")
    if not 1 <= resolution <= 604800:
        raise BadRequest("must be from 1 to 604800 seconds", field="resolution")
    start, end = _window(fields, default_span=None)
    wanted = _tag_filter(fields.get("tags"))
    summary = fields.get("summary_function", "mean")
    if summary not in _SUMMARIES:
        raise BadRequest(f"must be one of {', '.join(_SUMMARIES)}", field="summary_function")
    metric, series = services.metrics.read(
        principal.org_id, name, start=start, end=end, resolution=resolution, tags=wanted
    )
    if metric.type == "composite":
        return composites.stored_tagged(services, principal.org_id, metric, start, end, resolution)
    groups = _grouped(series, fields)
    return {
        "name": name,
        "resolution": resolution,
        "series": [
            {"tags": tags, "measurements": _tagged_points(points, summary)}
            for tags, points in groups
        ],
        "links": [],
    }


def _tag_filter(raw: Any) -> dict[str, list[str]]:
    if raw in (None, "", "*", {}):
        return {}
    if not isinstance(raw, dict):
        raise BadRequest("use tags[name]=pattern", field="tags")
    return {name: v if isinstance(v, list) else [str(v)] for name, v in raw.items()}


def _grouped(series: list[SeriesPoints], fields: Mapping[str, Any]):
    group_by = fields.get("group_by")
    if group_by in (None, "", "*"):
        return [(s.tags, s.points) for s in series if s.points]
    function = fields.get("group_by_function")
    if function not in ("sum", "min", "max", "mean"):
        raise BadRequest(
            "is required with group_by: sum, min, max or mean", field="group_by_function"
        )
    names = [n.strip().lower() for n in str(group_by).split(",") if n.strip()]
    buckets: dict[tuple[str, ...], list[SeriesPoints]] = {}
    for s in series:
        buckets.setdefault(tuple(s.tags.get(n, "") for n in names), []).append(s)
    out = []
    for values, members in buckets.items():
        by_time: dict[int, list[tuple[int, int, float, float, float]]] = {}
        for member in members:
            for p in member.points:
                by_time.setdefault(p[0], []).append(p)
        points = [_group_point(by_time[t], function) for t in sorted(by_time)]
        if points:
            out.append((dict(zip(names, values, strict=True)), points))
    return out


def _group_point(points: list[tuple[int, int, float, float, float]], function: str):
    means = [p[2] / p[1] for p in points]
    value = {"sum": sum(means), "min": min(means), "max": max(means)}.get(
        function, sum(means) / len(means)
    )
    return (points[0][0], 1, value, value, value)


def _tagged_points(points: list[tuple[int, int, float, float, float]], summary: str):
    if summary == "all":
        return [
            {
                "time": p[0],
                "count": p[1],
                "sum": p[2],
                "min": p[3],
                "max": p[4],
                "mean": p[2] / p[1],
            }
            for p in points
        ]
    if summary == "derivative":
        out, previous = [], None
        for p in points:
            value = p[2] / p[1]
            if previous is not None:
                out.append({"time": p[0], "value": value - previous})
            previous = value
        return out
    how = "average" if summary == "mean" else summary
    return [{"time": p[0], "value": point_value(p, how)} for p in points]


@router.get(
    "/measurements",
    summary="Evaluate a composite expression (compose, start_time, resolution)",
    responses=openapi.answers(400),
)
def get_composite(
    request: Request, services: ServicesDep, principal: Reader
) -> list[dict[str, Any]]:
    fields = query_fields(request)
    if fields.get("compose") in (None, ""):
        raise BadRequest("is required: a composite expression", field="compose")
    return composites.tagged_answer(services, principal.org_id, fields)
