"""The chart engine: series in, PNG out (matplotlib Agg, no pyplot, no network, no database).

Speed comes from three choices, measured in `make bench`: a figure per size is kept and cleared
between renders instead of rebuilt; each line is first reduced to the pixel columns it is drawn
into (the lowest and highest value in each column, which draws the same picture); and the PNG is
encoded by Pillow at a low compression level, which costs a few kilobytes and saves most of the
encode time. Time ticks are placed on round UTC minutes, hours or days by this module rather than
matplotlib's general date locator.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator
from PIL import Image

from snapshotd.engines.chart_semantics import Threshold, threshold_color

ChartType = Literal["line", "stacked", "bignumber"]
CHART_TYPES: tuple[ChartType, ...] = ("line", "stacked", "bignumber")

# Colour-blind-safe (Okabe–Ito order, then Tableau), so neighbouring streams stay distinct.
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#F0E442",
    "#000000",
    "#8c564b",
    "#7f7f7f",
)
_DPI = 100
_TICK_STEPS = (
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    10800,
    21600,
    43200,
    86400,
    2 * 86400,
    7 * 86400,
    14 * 86400,
    28 * 86400,
)


@dataclass(frozen=True)
class Series:
    """One drawn line: epoch seconds and values of equal length, sorted by time."""

    label: str
    times: np.ndarray
    values: np.ndarray
    color: str | None = None

    @classmethod
    def of(cls, label: str, points: Sequence[tuple[float, float]], color: str | None = None):
        array = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return cls(label, array[:, 0], array[:, 1], color)


@dataclass(frozen=True)
class Marker:
    """An annotation event: a vertical line at `start` (and one at `end`, the span between
    shaded, when the event lasted), labelled with its title."""

    start: float
    title: str
    end: float | None = None


@dataclass(frozen=True)
class ChartSpec:
    type: ChartType
    title: str
    start: float
    end: float
    series: list[Series] = field(default_factory=list)
    width: int = 800
    height: int = 400
    y_min: float | None = None
    y_max: float | None = None
    y_label: str = ""
    log_y: bool = False
    # bignumber: the value shown and its unit (the caller summarizes the stream).
    value: float | None = None
    units: str = ""
    # drawn on line and stacked charts; a big number takes the colour of the one it crosses
    thresholds: list[Threshold] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    # appended to the Y tick labels (a stream's `units_short`)
    y_units: str = ""


def plot_columns(width: int) -> int:
    """The pixel columns a time-series plot of `width` pixels draws into."""
    return max(1, int(width * 0.9))


def summarize(values: np.ndarray, function: str) -> float | None:
    """One number for a stream, as Librato's `summary_function` names it; None when empty."""
    if values.size == 0:
        return None
    if function == "sum":
        return float(values.sum())
    if function == "min":
        return float(values.min())
    if function == "max":
        return float(values.max())
    if function == "count":
        return float(values.size)
    if function == "last":
        return float(values[-1])
    if function == "derivative":
        return float(values[-1] - values[0])
    return float(values.mean())


def reduce_to_columns(series: Series, start: float, end: float, columns: int) -> Series:
    """The lowest and highest point of each pixel column, in time order: the same drawing as the
    full series, from at most two points a column."""
    if series.times.size <= 2 * columns or end <= start:
        return series
    scaled = (series.times - start) * (columns / (end - start))
    column = np.clip(scaled.astype(np.int64), 0, columns - 1)
    edges = np.flatnonzero(np.diff(column)) + 1
    starts = np.concatenate(([0], edges))
    lows = np.minimum.reduceat(series.values, starts)
    highs = np.maximum.reduceat(series.values, starts)
    centers = start + (column[starts] + 0.5) * ((end - start) / columns)
    times = np.repeat(centers, 2)
    values = np.empty(times.size)
    values[0::2], values[1::2] = lows, highs
    return Series(series.label, times, values, series.color)


def break_gaps(times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where points stop for much longer than their usual spacing (a stream that went silent, or
    rounds that measured nothing), the line is broken rather than drawn straight across."""
    steps = np.diff(times)
    positive = steps[steps > 0]
    if positive.size < 2:
        return times, values
    cuts = np.flatnonzero(steps > 2.5 * np.median(positive)) + 1
    if not cuts.size:
        return times, values
    return np.insert(times, cuts, np.nan), np.insert(values, cuts, np.nan)


def _isolated(values: np.ndarray) -> np.ndarray:
    """Points with no neighbour to draw a line to (a single round, or one between gaps), which a
    line alone would leave invisible."""
    present = ~np.isnan(values)
    before = np.concatenate(([False], present[:-1]))
    after = np.concatenate((present[1:], [False]))
    return present & ~before & ~after


def _tick_step(span: float, most: int) -> int:
    for step in _TICK_STEPS:
        if span / step <= most:
            return step
    return _TICK_STEPS[-1] * math.ceil(span / (_TICK_STEPS[-1] * most))


def _time_label(span: float):
    def label(value: float, _position: object) -> str:
        moment = datetime.fromtimestamp(value, UTC)
        if span > 2 * 86400:
            return moment.strftime("%b %d")
        if span > 6 * 3600:
            return moment.strftime("%b %d %H:%M") if moment.hour == 0 else moment.strftime("%H:%M")
        return moment.strftime("%H:%M")

    return FuncFormatter(label)


def _format_number(value: float) -> str:
    magnitude = abs(value)
    for limit, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if magnitude >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.4g}"


def _big_number(value: float) -> str:
    """A tile has room for the whole number below a million: 1,284 or 3.14, not 1.28k."""
    if abs(value) >= 1e6:
        return _format_number(value)
    return f"{value:,.2f}".rstrip("0").rstrip(".")


class _Frame:
    """A figure kept between renders. Axes, ticks and styling are built once; each render only
    swaps the drawn data and the texts, which is most of the speed-up over a fresh figure."""

    def __init__(self, width: int, height: int, *, with_axes: bool) -> None:
        self.figure = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
        self.canvas = FigureCanvasAgg(self.figure)
        self.title = self.figure.text(0.02, 0.96, "", fontsize=11, va="top")
        self.axes = self.figure.add_axes((0.08, 0.2, 0.9, 0.68)) if with_axes else None
        if self.axes is not None:
            axes = self.axes
            axes.tick_params(labelsize=8)
            axes.grid(True, color="#e5e5e5", lw=0.6)
            axes.set_axisbelow(True)
            for side in ("top", "right"):
                axes.spines[side].set_visible(False)
            axes.set_xlabel("UTC", fontsize=8, loc="right")

    def reset(self) -> None:
        for text in list(self.figure.texts):
            if text is not self.title:
                text.remove()
        if self.axes is not None:
            axes = self.axes
            for artist in [*axes.lines, *axes.collections, *axes.texts, *axes.patches]:
                artist.remove()
            legend = self.axes.get_legend()
            if legend is not None:
                legend.remove()

    def png(self, compress_level: int) -> bytes:
        self.canvas.draw()
        size = self.canvas.get_width_height()
        image = Image.frombuffer("RGBA", size, self.canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
        out = io.BytesIO()
        image.convert("RGB").save(out, format="PNG", compress_level=compress_level)
        return out.getvalue()


class ChartRenderer:
    """Renders ChartSpecs to PNG bytes. Keeps its figures per thread, so one renderer serves a
    worker's threads."""

    def __init__(self, *, compress_level: int = 1) -> None:
        self.compress_level = compress_level
        self._local = threading.local()

    def _frame(self, spec: ChartSpec) -> _Frame:
        frames: dict[tuple[bool, int, int], _Frame] = self._local.__dict__.setdefault("frames", {})
        key = (spec.type != "bignumber", spec.width, spec.height)
        frame = frames.get(key)
        if frame is None:
            frame = frames[key] = _Frame(spec.width, spec.height, with_axes=key[0])
        frame.reset()
        frame.title.set_text(spec.title)
        return frame

    def render(self, spec: ChartSpec) -> bytes:
        frame = self._frame(spec)
        if frame.axes is None:
            self._bignumber(frame, spec)
        else:
            self._timeseries(frame, spec)
        return frame.png(self.compress_level)

    def _timeseries(self, frame: _Frame, spec: ChartSpec) -> None:
        axes = frame.axes
        assert axes is not None
        has_data = any(s.times.size for s in spec.series)
        axes.set_yscale("log" if spec.log_y and has_data else "linear")
        columns = plot_columns(spec.width)
        colors = [s.color or PALETTE[i % len(PALETTE)] for i, s in enumerate(spec.series)]
        if not has_data:
            axes.text(
                0.5,
                0.5,
                "No data in this window",
                transform=axes.transAxes,
                ha="center",
                va="center",
                fontsize=16,
                color="#777777",
            )
        elif spec.type == "stacked":
            times, layers = _aligned(spec.series, spec.start, spec.end, columns)
            axes.stackplot(times, layers, colors=colors, labels=[s.label for s in spec.series])
        else:
            for series, color in zip(spec.series, colors, strict=True):
                reduced = reduce_to_columns(series, spec.start, spec.end, columns)
                times, values = break_gaps(reduced.times, reduced.values)
                axes.plot(times, values, color=color, lw=1.2, label=series.label)
                alone = _isolated(values)
                if alone.any():
                    axes.plot(times[alone], values[alone], "o", color=color, ms=3)
        span = spec.end - spec.start
        step = _tick_step(span, 8)
        first = math.ceil(spec.start / step) * step
        axes.set_xlim(spec.start, spec.end)
        axes.xaxis.set_major_locator(FixedLocator(np.arange(first, spec.end + 1, step).tolist()))
        axes.xaxis.set_major_formatter(_time_label(span))
        axes.yaxis.set_major_locator(MaxNLocator(6) if has_data else FixedLocator([]))
        if not spec.log_y:  # set_yscale just reset it
            suffix = f" {spec.y_units}" if spec.y_units else ""
            axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: _format_number(v) + suffix))
        if has_data:
            _draw_thresholds(axes, spec.thresholds)
        _draw_markers(axes, spec)
        axes.set_autoscaley_on(True)
        axes.relim()
        axes.autoscale_view(scalex=False)
        if has_data and spec.thresholds and not spec.log_y:
            _room_for_thresholds(axes, spec.thresholds)
        if spec.y_min is not None or spec.y_max is not None:
            axes.set_ylim(spec.y_min, spec.y_max)
        axes.set_ylabel(spec.y_label, fontsize=8)
        if has_data and spec.series:
            axes.legend(
                loc="upper center",
                bbox_to_anchor=(0.5, -0.12),
                ncol=min(4, len(spec.series)),
                fontsize=8,
                frameon=False,
            )

    def _bignumber(self, frame: _Frame, spec: ChartSpec) -> None:
        figure = frame.figure
        if spec.value is None:
            figure.text(0.5, 0.5, "No data", fontsize=28, color="#777777", ha="center", va="center")
        else:
            shown = _big_number(spec.value)
            color = threshold_color(spec.value, spec.thresholds) or "#000000"
            figure.text(
                0.5, 0.52, shown, fontsize=56, ha="center", va="center", weight="bold", color=color
            )
            if spec.units:
                figure.text(0.5, 0.25, spec.units, fontsize=16, color="#555555", ha="center")
        figure.text(0.96, 0.05, _window_text(spec), fontsize=8, color="#777777", ha="right")


def _draw_thresholds(axes: Any, thresholds: list[Threshold]) -> None:
    for threshold in thresholds:
        axes.axhline(threshold.value, color=threshold.color, lw=1.5, ls="--")
        axes.text(
            0.995,
            threshold.value,
            threshold.label,
            transform=axes.get_yaxis_transform(),
            ha="right",
            va="bottom",
            fontsize=7,
            color=threshold.color,
        )


def _room_for_thresholds(axes: Any, thresholds: list[Threshold]) -> None:
    """Autoscaling stops at a threshold drawn at the edge; leave it a margin to be seen in."""
    low, high = axes.get_ylim()
    pad = 0.06 * ((high - low) or 1.0)
    values = [t.value for t in thresholds]
    axes.set_ylim(min(low, min(values) - pad), max(high, max(values) + pad))


MARKER_COLOR = "#7A3E9D"


def _draw_markers(axes: Any, spec: ChartSpec) -> None:
    """Annotation events as vertical lines with their titles along the top of the plot."""
    for marker in spec.markers:
        start = max(marker.start, spec.start)
        if marker.end is not None and marker.end > marker.start:
            end = min(marker.end, spec.end)
            axes.axvspan(start, end, color=MARKER_COLOR, alpha=0.10, lw=0)
            if marker.end <= spec.end:
                axes.axvline(end, color=MARKER_COLOR, lw=1.0, ls=":")
        if marker.start >= spec.start:
            axes.axvline(start, color=MARKER_COLOR, lw=1.2)
        axes.annotate(
            marker.title,
            xy=(start, 0.98),
            xycoords=axes.get_xaxis_transform(),
            xytext=(-2, 0),  # beside the line, not on it
            textcoords="offset points",
            rotation=90,
            ha="right",
            va="top",
            fontsize=7,
            color=MARKER_COLOR,
            clip_on=True,
        )


def _aligned(
    series: list[Series], start: float, end: float, columns: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Stacked areas need one time base: the mean of each stream in each pixel column that has
    any point, a stream with no point in such a column counting as zero there."""
    width = (end - start) / columns
    times = start + (np.arange(columns) + 0.5) * width
    layers, seen = [], np.zeros(columns, dtype=bool)
    for s in series:
        column = np.clip(((s.times - start) / width).astype(np.int64), 0, columns - 1)
        sums = np.bincount(column, weights=s.values, minlength=columns)
        counts = np.bincount(column, minlength=columns)
        layers.append(np.divide(sums, counts, out=np.zeros(columns), where=counts > 0))
        seen |= counts > 0
    return times[seen], [layer[seen] for layer in layers]


def _window_text(spec: ChartSpec) -> str:
    def fmt(value: float) -> str:
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M")

    return f"{fmt(spec.start)} – {fmt(spec.end)} UTC"
