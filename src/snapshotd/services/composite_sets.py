"""Composite functions over sets of series: what each of Librato's composite functions computes
from the series it is given, as numpy over their arrays.

Every function here takes its call (for its options), the series its set argument evaluated to,
and the query's time span; reading series, `timeshift` and `group_by` evaluate sub-expressions and
live in `composites.py`. Points of different series meet at equal timestamps, which roll-ups to
one resolution make common. Options are checked by the function that reads them, so a function
called over no series still refuses a bad option.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from snapshotd.services.composite_language import Call, CompositeSyntaxError, Text
from snapshotd.services.metrics import MAX_POINTS_PER_READ

WINDOW_FUNCTIONS = ("mean", "sum", "min", "max", "median")
MAX_WINDOW = 64


@dataclass(frozen=True)
class Line:
    """One series of a composite's result: where it came from, and its points in time order."""

    metric: str
    tags: dict[str, str]
    times: np.ndarray  # epoch seconds, int64
    values: np.ndarray  # float64
    period: int  # seconds between points: the roll-up, or the metric's or series() period


@dataclass(frozen=True)
class Span:
    start: int
    end: int


SetFunction = Callable[[Call, list[Line], Span], list[Line]]


def _aligned(lines: list[Line]) -> tuple[np.ndarray, np.ndarray]:
    """Every timestamp any line has, and a matrix of the lines' values there (NaN where a line
    has no point)."""
    times = np.unique(np.concatenate([line.times for line in lines]))
    matrix = np.full((len(lines), times.size), np.nan)
    for row, line in enumerate(lines):
        matrix[row, np.searchsorted(times, line.times)] = line.values
    return times, matrix


def _joined(lines: list[Line], name: str, times: np.ndarray, values: np.ndarray) -> Line:
    """One line made from several: their common metric name (else the function's) and the tags
    they all share."""
    metrics = {line.metric for line in lines}
    shared = dict(lines[0].tags)
    for line in lines[1:]:
        shared = {k: v for k, v in shared.items() if line.tags.get(k) == v}
    keep = ~np.isnan(values)
    period = max(line.period for line in lines)
    return Line(
        metrics.pop() if len(metrics) == 1 else name, shared, times[keep], values[keep], period
    )


def _aggregate(reduce: Callable[..., np.ndarray]) -> SetFunction:
    def run(call: Call, inputs: list[Line], span: Span) -> list[Line]:
        lines = [line for line in inputs if line.times.size]
        if not lines:
            return []
        times, matrix = _aligned(lines)
        with np.errstate(all="ignore"):  # every column has a value: a union of times
            values = reduce(matrix, axis=0)
        return [_joined(lines, call.name, times, values)]

    return run


def _multiply(call: Call, inputs: list[Line], _span: Span) -> list[Line]:
    """The product at each time where every series has a point."""
    if not inputs or not all(line.times.size for line in inputs):
        return []
    times, matrix = _aligned(inputs)
    return [_joined(inputs, call.name, times, np.prod(matrix, axis=0))]


def _pair(operate: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> SetFunction:
    def run(call: Call, inputs: list[Line], span: Span) -> list[Line]:
        """Exactly two series, at the times both have; any other number gives no series, as
        Librato documents."""
        if len(inputs) != 2 or not all(line.times.size for line in inputs):
            return []
        times, matrix = _aligned(inputs)
        with np.errstate(all="ignore"):
            values = operate(matrix[0], matrix[1])
        values[~np.isfinite(values)] = np.nan  # a division by zero is no point
        return [_joined(inputs, call.name, times, values)]

    return run


def _each(transform: Callable[[Line, Call], Line]) -> SetFunction:
    """A function of each series on its own."""

    def run(call: Call, inputs: list[Line], span: Span) -> list[Line]:
        probe = Line("", {}, np.zeros(0, np.int64), np.zeros(0), 1)
        transform(probe, call)  # checks the options even when there is no data
        return [transform(line, call) for line in inputs]

    return run


def _scale(line: Line, call: Call) -> Line:
    raw = call.options.get("factor")
    if raw is None:
        raise CompositeSyntaxError("scale() needs a factor", call.position)
    text = str(raw).strip()
    try:
        if "/" in text:
            top, bottom = text.split("/", 1)
            factor = float(top) / float(bottom)
        else:
            factor = float(text)
    except (ValueError, ZeroDivisionError):
        raise CompositeSyntaxError(
            f"scale() factor {text!r} is not a number or a fraction", call.position
        ) from None
    if not np.isfinite(factor):
        raise CompositeSyntaxError("scale() factor must be finite", call.position)
    return replace(line, values=line.values * factor)


def _abs(line: Line, _call: Call) -> Line:
    return replace(line, values=np.abs(line.values))


def _integrate(line: Line, _call: Call) -> Line:
    return replace(line, values=np.cumsum(line.values))


def _derive(line: Line, call: Call) -> Line:
    reset = flag(call, "detect_reset", False)
    if line.times.size < 2:
        return replace(line, times=line.times[:0], values=line.values[:0])
    deltas = np.diff(line.values)
    if reset:
        dropped = deltas < 0
        deltas[dropped] = line.values[1:][dropped]
    return replace(line, times=line.times[1:], values=deltas)


def _rate(line: Line, call: Call) -> Line:
    duration = whole(call, "duration", 1, least=1, most=31 * 86400) or 1
    return replace(line, values=line.values / line.period * duration)


def _window(line: Line, call: Call) -> Line:
    size = whole(call, "size", 1, least=1, most=MAX_WINDOW) or 1
    function = "mean" if call.name == "moving_average" else None
    function = function or choice(call, "function", WINDOW_FUNCTIONS, "mean")
    if size == 1:
        return line
    if line.times.size < size:
        return replace(line, times=line.times[:0], values=line.values[:0])
    windows = np.lib.stride_tricks.sliding_window_view(line.values, size)
    reducers: dict[str, Callable[..., np.ndarray]] = {
        "mean": np.mean,
        "sum": np.sum,
        "min": np.min,
        "max": np.max,
        "median": np.median,
    }
    values = reducers[function](windows, axis=1)
    return replace(line, times=line.times[size - 1 :], values=values)


def _filled(value: str) -> SetFunction:
    def run(call: Call, inputs: list[Line], span: Span) -> list[Line]:
        return [_fill(line, value, span) for line in inputs]

    return run


def _fill_call(call: Call, inputs: list[Line], span: Span) -> list[Line]:
    raw = call.options.get("value")
    if raw is None:
        raise CompositeSyntaxError('fill() needs a value: a number or "last"', call.position)
    value = str(raw).strip().lower()
    if value != "last":
        try:
            float(value)
        except ValueError:
            raise CompositeSyntaxError(
                f'fill() value {value!r} is not a number or "last"', call.position
            ) from None
    return [_fill(line, value, span) for line in inputs]


def _fill(line: Line, value: str, span: Span) -> Line:
    """Every step of the line's period across the window, the missing ones given `value` (a
    number, or "last": the latest value before them; nothing before the first point)."""
    step = line.period
    first = span.start - span.start % step
    grid = np.arange(first, span.end + 1, step, dtype=np.int64)
    if grid.size > MAX_POINTS_PER_READ:
        return line
    values = np.full(grid.size, np.nan)
    index = np.searchsorted(grid, line.times)
    inside = (index < grid.size) & (grid[np.minimum(index, grid.size - 1)] == line.times)
    values[index[inside]] = line.values[inside]
    if value == "last":
        seen = np.where(~np.isnan(values), np.arange(values.size), -1)
        latest = np.maximum.accumulate(seen)
        keep = latest >= 0
        values = np.where(keep, values[np.maximum(latest, 0)], np.nan)
        return replace(line, times=grid[keep], values=values[keep])
    values[np.isnan(values)] = float(value)
    return replace(line, times=grid, values=values)


def _filter(call: Call, inputs: list[Line], _span: Span) -> list[Line]:
    bounds = {}
    for key in ("gt", "gte", "lt", "lte"):
        if key in call.options:
            try:
                bounds[key] = float(call.options[key])
            except (TypeError, ValueError):
                raise CompositeSyntaxError(
                    f"filter() {key} must be a number", call.position
                ) from None
    function = choice(call, "function", ("min", "max", "sum", "mean"), "mean")
    reducers: dict[str, Callable[..., Any]] = {
        "min": np.min,
        "max": np.max,
        "sum": np.sum,
        "mean": np.mean,
    }
    tests: dict[str, Callable[..., Any]] = {
        "gt": np.greater,
        "gte": np.greater_equal,
        "lt": np.less,
        "lte": np.less_equal,
    }
    kept = []
    for line in inputs:
        if not line.values.size:
            continue
        summary = reducers[function](line.values)
        if all(tests[key](summary, bound) for key, bound in bounds.items()):
            kept.append(line)
    return kept


SET_FUNCTIONS: dict[str, SetFunction] = {
    "sum": _aggregate(np.nansum),
    "mean": _aggregate(np.nanmean),
    "min": _aggregate(np.nanmin),
    "max": _aggregate(np.nanmax),
    "multiply": _multiply,
    "divide": _pair(np.divide),
    "subtract": _pair(np.subtract),
    "scale": _each(_scale),
    "abs": _each(_abs),
    "integrate": _each(_integrate),
    "derive": _each(_derive),
    "rate": _each(_rate),
    "window": _each(_window),
    "moving_average": _each(_window),
    "zero_fill": _filled("0"),
    "last_fill": _filled("last"),
    "fill": _fill_call,
    "filter": _filter,
}


# -- options --------------------------------------------------------------------------------------


def text_of(arg: Any) -> str:
    assert isinstance(arg, Text)
    return arg.value


def choice(call: Call, key: str, choices: tuple[str, ...], default: str) -> str:
    value = str(call.options.get(key, default)).strip().lower()
    if value not in choices:
        raise CompositeSyntaxError(
            f"{call.name}() {key} must be one of {', '.join(choices)}", call.position
        )
    return value


def whole(call: Call, key: str, default: int | None, *, least: int, most: int) -> int | None:
    raw = call.options.get(key)
    if raw is None:
        return default
    text = str(raw).strip()
    if not (text.isascii() and text.isdigit()) or not least <= int(text) <= most:
        raise CompositeSyntaxError(
            f"{call.name}() {key} must be a whole number from {least} to {most}", call.position
        )
    return int(text)


def flag(call: Call, key: str, default: bool) -> bool:
    raw = call.options.get(key)
    if raw is None:
        return default
    text = str(raw).strip().lower()
    if text not in ("true", "false"):
        raise CompositeSyntaxError(f"{call.name}() {key} must be true or false", call.position)
    return text == "true"


def finite(line: Line) -> Line:
    keep = np.isfinite(line.values)
    if keep.all():
        return line
    return replace(line, times=line.times[keep], values=line.values[keep])
