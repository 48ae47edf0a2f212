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
from snapshotd.engines.chart_semantics import counter_rates, parse_thresholds, parse_transform
from snapshotd.engines.charts import (
    CHART_TYPES,
    ChartSpec,
    Marker,
    Series,
    plot_columns,
    summarize,
)
from snapshotd.errors import BadRequest, NotFound
from snapshotd.services.annotations import Annotations
from snapshotd.services.composite_charts import composite_lines
from snapshotd.services.composites import Composites
from snapshotd.services.metrics import Metrics
from snapshotd.services.rollups import serving_resolution
from snapshotd.services.samples import MAX_WHOLE, epoch, number
from snapshotd.services.snapshots import Snapshots
from snapshotd.services.spaces import annotation_streams, choice, find_chart
from snapshotd.store.models import Snapshot

CHART_JOB = "chart"
MAX_POINTS_PER_LINE = 3600
# Up to an hour a chart keeps its seconds; a longer window draws at most one point per pixel
# column of its plot, as more could not be told apart, so a month reads the hourly roll-up.
SECONDS_KEPT_UP_TO = 3600


def chart_resolution(span: int, width: int) -> int:
    """The resolution a chart of `span` seconds, `width` pixels wide, reads its series at."""
    most = MAX_POINTS_PER_LINE if span <= SECONDS_KEPT_UP_TO else plot_columns(width)
    return serving_resolution(span, most)


class ChartSnapshots:
    """Requests chart snapshots, and turns one into the chart engine's input when its job runs."""

    def __init__(
        self,
        settings: Settings,
        snapshots: Snapshots,
        metrics: Metrics,
        annotations: Annotations | None = None,
    ) -> None:
        self.settings = settings
        self.snapshots = snapshots
        self.metrics = metrics
        self.annotations = annotations or Annotations(snapshots.db)
        self.composites = Composites(metrics)

    def create(
        self,
        org_id: str,
        chart_id: Any,
        *,
        chart_type: Any = None,
        duration: Any = None,
        end_time: Any = None,
        annotations: Any = None,
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
            if annotations is not None:  # the snapshot's own choice, over the chart's
                options["annotations"] = annotation_streams(
                    annotations, "subject.chart.annotations"
                )
            return self.snapshots.create(
                session, org_id, "chart", CHART_JOB, options=options, surface=surface, actor=actor
            )

    def spec(self, snapshot: Snapshot) -> tuple[ChartSpec, dict[str, Any]]:
        """The engine's input for a chart snapshot, read from stored series, and its metadata."""
        options = snapshot.options
        chart, end = options["chart"], int(options["end_time"])
        start = end - int(options["duration"])
        width = int(options.get("width", 800))
        resolution = chart_resolution(end - start, width)
        streams: list[dict[str, Any]] = chart.get("streams", [])
        lines: list[Series] = []
        first: list[Series] = []
        described = []
        for index, stream in enumerate(streams):
            if stream.get("composite"):
                subject = {"composite": stream["composite"]}
                found = composite_lines(
                    self.composites,
                    snapshot.org_id,
                    stream,
                    start=start,
                    end=end,
                    resolution=resolution,
                    width=width,
                )
            else:
                subject = {"metric": stream["metric"]}
                found = self._lines(snapshot.org_id, stream, start, end, resolution)
            lines.extend(found)
            first = found if index == 0 else first
            points = sum(line.times.size for line in found)
            described.append({**subject, "lines": len(found), "points": points})
        value = None
        if chart["type"] == "bignumber" and first:
            # A big number is one value: a breakout stream is averaged across its series first.
            _times, values = combine([(s.times, s.values) for s in first], "average")
            how = "last" if chart.get("use_last_value") else streams[0].get("summary_function")
            value = summarize(values, how or "average")
        names = options["annotations"] if "annotations" in options else chart.get("annotations")
        if chart["type"] == "bignumber":  # a single number has no time axis to mark
            names = []
        markers = [
            Marker(float(m.start), m.title, None if m.end is None else float(m.end))
            for m in self.annotations.markers(snapshot.org_id, names or [], start, end)
        ]
        y_min, y_max = _axis(chart, streams)
        spec = ChartSpec(
            type=chart["type"],
            title=chart.get("name") or "",
            start=float(start),
            end=float(end),
            series=lines,
            width=width,
            height=int(options.get("height", 400)),
            y_min=y_min,
            y_max=y_max,
            y_label=str(chart.get("label") or _shared(streams, "units_long")),
            log_y=bool(chart.get("use_log_yaxis")),
            value=value,
            units=_units(streams[0]) if streams else "",
            thresholds=_thresholds(chart),
            markers=markers,
            y_units=_shared(streams, "units_short"),
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
            "markers": len(markers),
        }
        return spec, metadata

    def _lines(
        self, org_id: str, stream: dict[str, Any], start: int, end: int, resolution: int
    ) -> list[Series]:
        """A stream's drawn lines: its series read at `resolution`, counters turned into rates,
        combined by `group_function` (or one line each for `breakout`), then transformed."""
        wanted: dict[str, list[str]] = {}
        if stream.get("tags"):
            for tag in stream["tags"]:
                values = ["*"] if tag.get("dynamic") or not tag["values"] else tag["values"]
                wanted[tag["name"]] = values
        elif stream.get("source") not in (None, "*", "%"):
            wanted["source"] = [stream["source"]]
        try:
            metric = self.metrics.get(org_id, stream["metric"])
        except NotFound:
            return []
        counter = metric.type == "counter"
        period = stream.get("period") or metric.period
        summary = stream.get("summary_function", "average")
        # A counter is a running total: a bucket's highest value is its latest.
        function = "max" if counter else "average" if summary == "derivative" else summary
        found = self.metrics.read_values(
            org_id,
            stream["metric"],
            start=start,
            end=end,
            resolution=resolution,
            tags=wanted,
            function=function,
        )
        if counter:
            found = [(tags, *counter_rates(t, v, float(period or 1))) for tags, t, v in found]
            found = [item for item in found if item[1].size]
        label = stream.get("name") or stream["metric"]
        group = stream.get("group_function", "average")
        if group == "breakout":
            drawn = [(f"{label} {_describe(tags)}".strip(), t, v, None) for tags, t, v in found]
        elif found:
            times, values = combine([(t, v) for _tags, t, v in found], group)
            drawn = [(label, times, values, stream.get("color"))]
        else:
            drawn = []
        transform = stream.get("transform_function")
        formula = parse_transform(transform) if transform else None
        out = []
        for name, times, values, color in drawn:
            if formula is not None:
                values = formula.apply(values, float(period or 1))
            kept = np.isfinite(values)
            if kept.any():
                out.append(Series(name, times[kept], values[kept], color))
        return out


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


def _units(stream: Mapping[str, Any]) -> str:
    return str(stream.get("units_short") or stream.get("units_long") or "")


def _shared(streams: list[dict[str, Any]], key: str) -> str:
    """A unit every stream names alike, or nothing (a mixed axis is left unlabelled)."""
    found = {stream.get(key) or "" for stream in streams}
    return str(found.pop()) if len(found) == 1 else ""


def _axis(chart: Mapping[str, Any], streams: list[dict[str, Any]]) -> tuple[Any, Any]:
    """The chart's own `min`/`max`, else the widest of its streams' `min`/`max`."""
    lows = [s["min"] for s in streams if s.get("min") is not None]
    highs = [s["max"] for s in streams if s.get("max") is not None]
    low = chart.get("min") if chart.get("min") is not None else (min(lows) if lows else None)
    high = chart.get("max") if chart.get("max") is not None else (max(highs) if highs else None)
    return low, high


def _thresholds(chart: Mapping[str, Any]) -> list[Any]:
    try:
        return parse_thresholds(chart.get("thresholds"))
    except BadRequest:  # stored before thresholds were checked: drawn without them
        return []
