"""A chart stream that is a composite: its expression's series as drawn lines.

The composite is evaluated at the chart's resolution, like any stream. When a line still has more
points than the plot has pixel columns, its points are first combined column by column with the
stream's `downsample_function` (average, sum, min or max), which is what Librato's composite
streams let the user choose.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from snapshotd.engines.charts import Series, plot_columns
from snapshotd.services.composites import Composites, Line

DOWNSAMPLE_FUNCTIONS = ("average", "sum", "min", "max")


def composite_lines(
    composites: Composites,
    org_id: str,
    stream: Mapping[str, Any],
    *,
    start: int,
    end: int,
    resolution: int,
    width: int,
) -> list[Series]:
    found = composites.evaluate(
        org_id, stream["composite"], start=start, end=end, resolution=resolution
    )
    found = [line for line in found if line.times.size]
    label = stream.get("name") or "composite"
    function = stream.get("downsample_function") or "average"
    columns = plot_columns(width)
    several_metrics = len({line.metric for line in found}) > 1
    out = []
    for line in found:
        times, values = downsample(line, start, end, columns, function)
        name = label if len(found) == 1 else f"{label} {_describe(line, several_metrics)}"
        out.append(Series(name, times, values, stream.get("color")))
    return out


def downsample(
    line: Line, start: int, end: int, columns: int, function: str
) -> tuple[np.ndarray, np.ndarray]:
    """At most one point per pixel column: the column's points combined by `function`, placed at
    their mean time."""
    times = line.times.astype(np.float64)
    if line.times.size <= columns or end <= start:
        return times, line.values
    column = np.clip(((times - start) * (columns / (end - start))).astype(np.int64), 0, columns - 1)
    starts = np.concatenate(([0], np.flatnonzero(np.diff(column)) + 1))
    counts = np.diff(np.append(starts, times.size))
    sums = np.add.reduceat(line.values, starts)
    reduced = {
        "sum": sums,
        "min": np.minimum.reduceat(line.values, starts),
        "max": np.maximum.reduceat(line.values, starts),
    }.get(function, sums / counts)
    return np.add.reduceat(times, starts) / counts, reduced


def _describe(line: Line, with_metric: bool) -> str:
    tags = ", ".join(f"{k}={v}" for k, v in sorted(line.tags.items()))
    return f"{line.metric} {tags}".strip() if with_metric else tags
