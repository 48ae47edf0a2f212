"""Chart snapshots: a chart over a time window, rendered to PNG by a job on the shared queue.

A snapshot freezes the chart's definition when it is requested, so editing the chart afterwards
does not change a snapshot already taken. The job reads stored series only (`Metrics.read_values`)
and hands them to the chart engine; it never calls back into the API.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from snapshotd.config import Settings
from snapshotd.engines.charts import CHART_TYPES, ChartSpec, Series, summarize
from snapshotd.errors import BadRequest, NotFound
from snapshotd.services.metrics import Metrics
from snapshotd.services.rollups import serving_resolution
from snapshotd.services.samples import MAX_WHOLE, epoch, number
from snapshotd.services.snapshots import Snapshots
from snapshotd.services.spaces import choice, find_chart
from snapshotd.store.models import Snapshot

CHART_JOB = "chart"
MAX_POINTS_PER_LINE = 3600


class ChartSnapshots:
    """Requests chart snapshots, and turns one into the chart engine's input when its job runs."""

    def __init__(self, settings: Settings, snapshots: Snapshots, metrics: Metrics) -> None:
        self.settings = settings
        self.snapshots = snapshots
        self.metrics = metrics

    def create(
        self,
        org_id: str,
        chart_id: Any,
        *,
        chart_type: Any = None,
        duration: Any = None,
        end_time: Any = None,
        surface: str,
        actor: str,
    ) -> Snapshot:
        if isinstance(chart_id, str) and chart_id.isascii() and chart_id.isdigit():
            chart_id = int(chart_id)
        if not isinstance(chart_id, int) or isinstance(chart_id, bool):
            raise BadRequest("must be a chart id", field="subject.chart.id")
        if not 0 < chart_id <= MAX_WHOLE:
            raise NotFound(f"no chart {chart_id}")
        seconds = 3600 if duration in (None, "") else number(duration, "duration")
        longest = self.settings.chart_max_duration_seconds
        if seconds < 1 or seconds > longest or seconds != int(seconds):
            raise BadRequest(
                f"must be a whole number from 1 to {longest} seconds", field="duration"
            )
        now = time.time()
        end = int(now) if end_time in (None, "") else epoch(end_time, "end_time", now=now)
        if end > now + 5:
            raise BadRequest("must not be in the future", field="end_time")
        with self.snapshots.db.session() as session:
            chart = find_chart(session, org_id, chart_id)
            kind = choice(chart_type, CHART_TYPES, chart.type, "subject.chart.type")
            frozen = {"name": chart.name, "type": kind, **chart.definition}
            options = {
                "chart_id": chart.id,
                "space_id": chart.space_id,
                "chart": frozen,
                "duration": int(seconds),
                "end_time": end,
                "width": self.settings.chart_width,
                "height": self.settings.chart_height,
            }
            return self.snapshots.create(
                session, org_id, "chart", CHART_JOB, options=options, surface=surface, actor=actor
            )

    def spec(self, snapshot: Snapshot) -> tuple[ChartSpec, dict[str, Any]]:
        """The engine's input for a chart snapshot, read from stored series, and its metadata."""
        options = snapshot.options
        chart, end = options["chart"], int(options["end_time"])
        start = end - int(options["duration"])
        resolution = serving_resolution(end - start, MAX_POINTS_PER_LINE)
        lines: list[Series] = []
        described = []
        for stream in chart.get("streams", []):
            found = self._lines(snapshot.org_id, stream, start, end, resolution)
            lines.extend(found)
            points = sum(line.times.size for line in found)
            described.append({"metric": stream["metric"], "lines": len(found), "points": points})
        first = chart.get("streams", [{}])[0] if chart.get("streams") else {}
        value = None
        if chart["type"] == "bignumber" and lines:
            how = "last" if chart.get("use_last_value") else first.get("summary_function")
            value = summarize(lines[0].values, how or "average")
        spec = ChartSpec(
            type=chart["type"],
            title=chart.get("name") or "",
            start=float(start),
            end=float(end),
            series=lines,
            width=int(options.get("width", 800)),
            height=int(options.get("height", 400)),
            y_min=chart.get("min"),
            y_max=chart.get("max"),
            y_label=str(chart.get("label") or ""),
            log_y=bool(chart.get("use_log_yaxis")),
            value=value,
            units=str(first.get("units_short") or first.get("units_long") or ""),
        )
        metadata = {
            "chart_id": options["chart_id"],
            "chart_name": chart.get("name") or "",
            "chart_type": chart["type"],
            "start_time": start,
            "end_time": end,
            "resolution": resolution,
            "streams": described,
            "value": value,
        }
        return spec, metadata

    def _lines(
        self, org_id: str, stream: dict[str, Any], start: int, end: int, resolution: int
    ) -> list[Series]:
        wanted: dict[str, list[str]] = {}
        if stream.get("tags"):
            for tag in stream["tags"]:
                values = ["*"] if tag.get("dynamic") or not tag["values"] else tag["values"]
                wanted[tag["name"]] = values
        elif stream.get("source") not in (None, "*", "%"):
            wanted["source"] = [stream["source"]]
        summary = stream.get("summary_function", "average")
        found = self.metrics.read_values(
            org_id,
            stream["metric"],
            start=start,
            end=end,
            resolution=resolution,
            tags=wanted,
            function="average" if summary == "derivative" else summary,
        )
        label = stream.get("name") or stream["metric"]
        group = stream.get("group_function", "average")
        if group == "breakout":
            return [
                Series(f"{label} {_describe(tags)}".strip(), times, values)
                for tags, times, values in found
            ]
        if not found:
            return []
        times, values = combine([(t, v) for _tags, t, v in found], group)
        return [Series(label, times, values, stream.get("color"))]


def combine(
    lines: list[tuple[np.ndarray, np.ndarray]], function: str
) -> tuple[np.ndarray, np.ndarray]:
    """One line from several, point by point at equal times, by `group_function`."""
    if len(lines) == 1:
        return lines[0]
    times = np.unique(np.concatenate([t for t, _v in lines]))
    stack = np.full((len(lines), times.size), np.nan)
    for row, (t, v) in enumerate(lines):
        stack[row, np.searchsorted(times, t)] = v
    with np.errstate(all="ignore"):
        reducers: dict[str, Callable[..., np.ndarray]] = {
            "sum": np.nansum,
            "min": np.nanmin,
            "max": np.nanmax,
        }
        return times, reducers.get(function, np.nanmean)(stack, axis=0)


def _describe(tags: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(tags.items()))
