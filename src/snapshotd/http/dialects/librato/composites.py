"""Librato Metrics API v1 (`/v1`): composite metrics on the wire.

`GET /v1/metrics?compose=…` answers the legacy shape (`measurements` as a list, one entry per
resulting series, with its `source`), `GET /v1/measurements?compose=…` the tagged one (a JSON
array of `{tags, measurements, metric, period}`); both are what `get_composite` and
`get_composite_tagged` of the official client return. A stored composite metric (`type:
composite`) is evaluated when `GET /v1/metrics/:name` or `GET /v1/measurements/:name` asks it
for data. The routes stay in `common.py` and `reads.py`; this module shapes their answers.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from snapshotd.errors import BadRequest
from snapshotd.http.deps import Services
from snapshotd.services.composites import Line
from snapshotd.services.records import Metric
from snapshotd.services.samples import epoch, whole

MAX_RESOLUTION = 604800


def window(fields: Mapping[str, Any]) -> tuple[int, int, int]:
    """start, end and resolution of a composite query: `start_time` (or `duration`) is
    required, `end_time` defaults to now, `resolution` to 1 second."""
    if fields.get("start_time") in (None, "") and fields.get("duration") in (None, ""):
        raise BadRequest("is required with compose", field="start_time")
    now = int(time.time())
    end = now if fields.get("end_time") in (None, "") else epoch(fields["end_time"], "end_time")
    if fields.get("start_time") not in (None, ""):
        start = epoch(fields["start_time"], "start_time")
    else:
        start = end - whole(fields["duration"], "duration")
    if start > end:
        raise BadRequest("must not be after end_time", field="start_time")
    raw = fields.get("resolution")
    resolution = 1 if raw in (None, "") else whole(raw, "resolution", least=1, most=MAX_RESOLUTION)
    return start, end, resolution


def _lines(services: Services, org_id: str, expression: Any, fields: Mapping[str, Any]):
    if not isinstance(expression, str):
        raise BadRequest("must be one composite expression", field="compose")
    start, end, resolution = window(fields)
    lines = services.composites.evaluate(
        org_id, expression, start=start, end=end, resolution=resolution
    )
    return lines, resolution


def legacy_answer(services: Services, org_id: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """`GET /v1/metrics?compose=…`."""
    expression = fields.get("compose")
    lines, resolution = _lines(services, org_id, expression, fields)
    return {
        "compose": expression,
        "resolution": resolution,
        "measurements": [_legacy_entry(line) for line in lines],
    }


def _legacy_entry(line: Line) -> dict[str, Any]:
    source = source_name(line)
    return {
        "metric": _metric(line),
        "period": line.period,
        "query": {"metric": line.metric, "source": source},
        "series": [
            {"measure_time": int(t), "value": float(v)}
            for t, v in zip(line.times.tolist(), line.values.tolist(), strict=True)
        ],
        "source": {"name": source, "display_name": source},
    }


def tagged_answer(
    services: Services, org_id: str, fields: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """`GET /v1/measurements?compose=…`."""
    lines, _resolution = _lines(services, org_id, fields.get("compose"), fields)
    return [
        {
            "tags": line.tags,
            "measurements": _tagged_points(line),
            "metric": _metric(line),
            "period": line.period,
        }
        for line in lines
    ]


def stored_legacy(
    services: Services, org_id: str, metric: Metric, start: int, end: int, resolution: int
) -> dict[str, Any]:
    """A stored composite's data in the shape of `GET /v1/metrics/:name`: points by source."""
    lines = _stored(services, org_id, metric, start, end, resolution)
    measurements: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        key = source_name(line)
        if key in measurements:
            key = f"{line.metric} {key}"
        measurements[key] = [
            {"measure_time": int(t), "value": float(v)}
            for t, v in zip(line.times.tolist(), line.values.tolist(), strict=True)
        ]
    return {"resolution": resolution, "measurements": measurements}


def stored_tagged(
    services: Services, org_id: str, metric: Metric, start: int, end: int, resolution: int
) -> dict[str, Any]:
    """A stored composite's data in the shape of `GET /v1/measurements/:name`."""
    lines = _stored(services, org_id, metric, start, end, resolution)
    return {
        "name": metric.name,
        "resolution": resolution,
        "series": [{"tags": line.tags, "measurements": _tagged_points(line)} for line in lines],
        "links": [],
    }


def _stored(
    services: Services, org_id: str, metric: Metric, start: int, end: int, resolution: int
) -> list[Line]:
    return services.composites.evaluate(
        org_id, metric.composite or "", start=start, end=end, resolution=resolution
    )


def _tagged_points(line: Line) -> list[dict[str, Any]]:
    return [
        {"time": int(t), "value": float(v)}
        for t, v in zip(line.times.tolist(), line.values.tolist(), strict=True)
    ]


def _metric(line: Line) -> dict[str, Any]:
    return {"name": line.metric, "period": line.period, "attributes": {}}


def source_name(line: Line) -> str:
    """A legacy source for a resulting series: its `source` tag, its other tags, or `*` for a
    series that combines several."""
    if "source" in line.tags:
        return line.tags["source"]
    if line.tags:
        return ",".join(f"{k}={v}" for k, v in sorted(line.tags.items()))
    return "*"
