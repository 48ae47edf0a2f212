"""Composite metrics: Librato's composite expressions evaluated over stored series.

An expression (`composite_language.py` reads it) is a tree of functions over *sets of series*.
Its leaves, `series()`/`s()`, read stored series through `Metrics.read_values` (one query per
series, rolled up in SQL at the query's resolution, or at the `period` the call asks for); every
other function is plain numpy over those arrays. Points of different series meet at equal
timestamps, which roll-ups to one resolution make common. Nothing here writes measurements;
storing a composite metric is a metric row with `type: composite` and its expression.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from sqlalchemy import select

from snapshotd.errors import BadRequest
from snapshotd.services.composite_language import (
    Call,
    CompositeSyntaxError,
    Node,
    Options,
    SetOf,
    Text,
    parse,
)
from snapshotd.services.metrics import MAX_POINTS_PER_READ, Metrics
from snapshotd.services.samples import MetricChanges, check_name, wildcard
from snapshotd.store.models import Metric

SERIES_FUNCTIONS = {"mean": "average", "sum": "sum", "min": "min", "max": "max", "count": "count"}
WINDOW_FUNCTIONS = ("mean", "sum", "min", "max", "median")
MAX_WINDOW = 64
MAX_SERIES = 2000
MAX_SHIFTS = 10
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class Line:
    """One series of a composite's result: where it came from, and its points in time order."""

    metric: str
    tags: dict[str, str]
    times: np.ndarray  # epoch seconds, int64
    values: np.ndarray  # float64
    period: int  # seconds between points: the roll-up, or the metric's or series() period


def compile_expression(expression: Any) -> Node:
    """The checked tree of an expression, or a 400 naming `compose` and the position of the
    fault. Option values are checked by evaluating once over no data."""
    try:
        node = parse(expression)
        _evaluate(node, _Query(None, "", 0, 0, 1, dry=True))
    except CompositeSyntaxError as error:
        raise BadRequest(str(error), field="compose") from None
    return node


class Composites:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def evaluate(
        self, org_id: str, expression: str, *, start: int, end: int, resolution: int
    ) -> list[Line]:
        if end < start:
            raise BadRequest("must not be before start_time", field="end_time")
        if resolution < 1:
            raise BadRequest("must be at least 1 second", field="resolution")
        if (end - start) / resolution > MAX_POINTS_PER_READ:
            raise BadRequest(
                f"is too fine for this interval (at most {MAX_POINTS_PER_READ} points a series)",
                field="resolution",
            )
        node = compile_expression(expression)
        query = _Query(self.metrics, org_id, start, end, resolution)
        try:
            lines = _evaluate(node, query)
        except CompositeSyntaxError as error:
            raise BadRequest(str(error), field="compose") from None
        return [_finite(line) for line in lines]

    def put(self, org_id: str, name: str, expression: Any, changes: MetricChanges) -> bool:
        """Creates or updates a stored composite metric; True if created. An update may leave
        the expression out to change only the other properties. A gauge or counter of that name
        is not turned into a composite."""
        check_name(name)
        if expression is not None:
            if not isinstance(expression, str):
                raise BadRequest("must be a composite expression", field="composite")
            try:
                compile_expression(expression)
            except BadRequest as error:
                raise BadRequest(error.detail, field="composite") from None
        with self.metrics.db.session() as session:
            metric = session.scalar(
                select(Metric).where(Metric.org_id == org_id, Metric.key == name.lower())
            )
            created = metric is None
            if expression is None and (metric is None or metric.type != "composite"):
                raise BadRequest("is required with type composite", field="composite")
            if metric is None:
                metric = Metric(org_id=org_id, key=name.lower(), name=name, type="composite")
                session.add(metric)
            elif metric.type != "composite":
                raise BadRequest(
                    f"{name} is a {metric.type}; a composite needs a name of its own", field="type"
                )
            if expression is not None:
                metric.composite = expression
        self.metrics.put(org_id, name, replace(changes, type=None))
        return created


# -- evaluation -----------------------------------------------------------------------------------


@dataclass
class _Query:
    metrics: Metrics | None  # None: a dry run that checks options over no data
    org_id: str
    start: int
    end: int
    resolution: int
    dry: bool = False
    group: dict[str, str] = field(default_factory=dict)
    cache: dict[tuple[Any, ...], list[Line]] = field(default_factory=dict)


def _evaluate(node: Node, query: _Query) -> list[Line]:
    if isinstance(node, SetOf):
        return [line for item in node.items for line in _evaluate(item, query)]
    if node.name == "series":
        return _series(node, query)
    return _FUNCTIONS[node.name](node, query)


def _inputs(call: Call, query: _Query) -> list[Line]:
    """The set of series a function works on: its last set argument, evaluated."""
    for arg in reversed(call.args):
        if isinstance(arg, Call | SetOf):
            return _evaluate(arg, query)
    return []


def _series(call: Call, query: _Query) -> list[Line]:
    lines = _read(call, query)
    if query.group:
        lines = [
            line for line in lines if all(line.tags.get(k) == v for k, v in query.group.items())
        ]
    return lines


def _read(call: Call, query: _Query) -> list[Line]:
    pattern = _text(call.args[0])
    function = _choice(call, "function", tuple(SERIES_FUNCTIONS), "mean")
    period = _whole(call, "period", None, least=1, most=604800)
    tags = _tag_filter(call)
    if query.metrics is None:
        return []
    resolution = max(query.resolution, period or 1)
    key = (pattern.lower(), repr(sorted(tags.items())), function, resolution, query.start)
    if key in query.cache:
        return query.cache[key]
    lines: list[Line] = []
    for metric in _metrics_named(query.metrics, query.org_id, pattern):
        found = query.metrics.read_values(
            query.org_id,
            metric.name,
            start=query.start,
            end=query.end,
            resolution=resolution,
            tags=tags,
            function=SERIES_FUNCTIONS[function],
        )
        effective = max(resolution, period or metric.period or 0)
        for series_tags, times, values in found:
            lines.append(Line(metric.name, series_tags, times.astype(np.int64), values, effective))
            if len(lines) > MAX_SERIES:
                raise CompositeSyntaxError(
                    f"series() matches more than {MAX_SERIES} series", call.position
                )
    query.cache[key] = lines
    return lines


def _metrics_named(metrics: Metrics, org_id: str, pattern: str) -> list[Metric]:
    """The gauges and counters a series() name matches (`*` wildcards, any case)."""
    longest = max(pattern.lower().split("*"), key=len)
    found, _count, _total = metrics.find(org_id, name=longest, length=MAX_SERIES)
    matcher = wildcard(pattern)
    return [m for m in found if m.type != "composite" and matcher.match(m.key)]


def _tag_filter(call: Call) -> dict[str, list[str]]:
    arg = call.args[1]
    if isinstance(arg, Text):
        source = arg.value.strip().lower()
        return {} if source in ("", "*", "%") else {"source": [source]}
    assert isinstance(arg, Options)
    wanted = {}
    for name, value in arg.values.items():
        values = value if isinstance(value, list) else [value]
        cleaned = [str(v).lower() for v in values if str(v) not in ("", "%")]
        if cleaned and cleaned != ["*"]:
            wanted[str(name).lower()] = cleaned
    return wanted


# -- functions over sets --------------------------------------------------------------------------


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


def _aggregate(reduce: Callable[..., np.ndarray]) -> Callable[[Call, _Query], list[Line]]:
    def run(call: Call, query: _Query) -> list[Line]:
        lines = [line for line in _inputs(call, query) if line.times.size]
        if not lines:
            return []
        times, matrix = _aligned(lines)
        with np.errstate(all="ignore"):  # every column has a value: a union of times
            values = reduce(matrix, axis=0)
        return [_joined(lines, call.name, times, values)]

    return run


def _multiply(call: Call, query: _Query) -> list[Line]:
    """The product at each time where every series has a point."""
    lines = _inputs(call, query)
    if not lines or not all(line.times.size for line in lines):
        return []
    times, matrix = _aligned(lines)
    return [_joined(lines, call.name, times, np.prod(matrix, axis=0))]


def _pair(operate: Callable[[np.ndarray, np.ndarray], np.ndarray]):
    def run(call: Call, query: _Query) -> list[Line]:
        """Exactly two series, at the times both have; any other number gives no series, as
        Librato documents."""
        lines = _inputs(call, query)
        if len(lines) != 2 or not all(line.times.size for line in lines):
            return []
        times, matrix = _aligned(lines)
        with np.errstate(all="ignore"):
            values = operate(matrix[0], matrix[1])
        values[~np.isfinite(values)] = np.nan
        return [_joined(lines, call.name, times, values)]

    return run


def _each(transform: Callable[[Line, Call], Line | None]):
    def run(call: Call, query: _Query) -> list[Line]:
        probe = Line("", {}, np.zeros(0, np.int64), np.zeros(0), 1)
        transform(probe, call)  # checks the options even when there is no data
        out = [transform(line, call) for line in _inputs(call, query)]
        return [line for line in out if line is not None]

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
    reset = _flag(call, "detect_reset", False)
    if line.times.size < 2:
        return replace(line, times=line.times[:0], values=line.values[:0])
    deltas = np.diff(line.values)
    if reset:
        dropped = deltas < 0
        deltas[dropped] = line.values[1:][dropped]
    return replace(line, times=line.times[1:], values=deltas)


def _rate(line: Line, call: Call) -> Line:
    duration = _whole(call, "duration", 1, least=1, most=31 * 86400) or 1
    return replace(line, values=line.values / line.period * duration)


def _window(line: Line, call: Call) -> Line:
    size = _whole(call, "size", 1, least=1, most=MAX_WINDOW) or 1
    function = "mean" if call.name == "moving_average" else None
    function = function or _choice(call, "function", WINDOW_FUNCTIONS, "mean")
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


def _filled(value: str) -> Callable[[Call, _Query], list[Line]]:
    def run(call: Call, query: _Query) -> list[Line]:
        return [_fill(line, value, query) for line in _inputs(call, query)]

    return run


def _fill_call(call: Call, query: _Query) -> list[Line]:
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
    return [_fill(line, value, query) for line in _inputs(call, query)]


def _fill(line: Line, value: str, query: _Query) -> Line:
    """Every step of the line's period across the window, the missing ones given `value` (a
    number, or "last": the latest value before them; nothing before the first point)."""
    step = line.period
    first = query.start - query.start % step
    grid = np.arange(first, query.end + 1, step, dtype=np.int64)
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


def _filter(call: Call, query: _Query) -> list[Line]:
    bounds = {}
    for key in ("gt", "gte", "lt", "lte"):
        if key in call.options:
            try:
                bounds[key] = float(call.options[key])
            except ValueError:
                raise CompositeSyntaxError(
                    f"filter() {key} must be a number", call.position
                ) from None
    function = _choice(call, "function", ("min", "max", "sum", "mean"), "mean")
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
    for line in _inputs(call, query):
        if not line.values.size:
            continue
        summary = reducers[function](line.values)
        if all(tests[key](summary, bound) for key, bound in bounds.items()):
            kept.append(line)
    return kept


def _timeshift(call: Call, query: _Query) -> list[Line]:
    shifts = _shifts(call)
    out = []
    for shift in shifts:
        shifted = replace(query, start=query.start - shift, end=query.end - shift)
        for line in _inputs(call, shifted):
            out.append(replace(line, times=line.times + shift))
    return out


def _shifts(call: Call) -> list[int]:
    """'1w', '0,1,2,3w', '+1d', '3600': whole periods back in time (forward with a '+')."""
    text = _text(call.args[0]).strip().lower()
    unit = 1
    if text and text[-1] in _UNITS:
        unit, text = _UNITS[text[-1]], text[:-1]
    shifts = []
    for part in text.split(","):
        part = part.strip()
        forward = part.startswith("+")
        digits = part.lstrip("+-")
        if not digits.isdigit() or len(digits) > 6:
            raise CompositeSyntaxError(
                'timeshift() takes shifts like "1w" or "0,1,2d"', call.args[0].position
            )
        shifts.append(int(digits) * unit * (-1 if forward else 1))
    if len(shifts) > MAX_SHIFTS:
        raise CompositeSyntaxError(f"timeshift() takes at most {MAX_SHIFTS} shifts", call.position)
    return shifts


def _group_by(call: Call, query: _Query) -> list[Line]:
    """The inner expression once per combination of the named tags' values found in the series
    it reads; each result carries its group's tags."""
    names = [n.strip().lower() for n in _text(call.args[0]).split(",") if n.strip()]
    if not names:
        raise CompositeSyntaxError("group_by() needs one or more tag names", call.position)
    inner = call.args[1]
    assert isinstance(inner, Call | SetOf)
    if query.dry:
        return _evaluate(inner, query)
    groups = set()
    for leaf in _leaves(inner):
        for line in _series(leaf, query):
            if all(name in line.tags for name in names):
                groups.add(tuple(line.tags[name] for name in names))
    out = []
    for values in sorted(groups):
        group = dict(zip(names, values, strict=True))
        for line in _evaluate(inner, replace(query, group={**query.group, **group})):
            out.append(replace(line, tags={**line.tags, **group}))
    return out


def _leaves(node: Node) -> Iterator[Call]:
    if isinstance(node, SetOf):
        for item in node.items:
            yield from _leaves(item)
    elif node.name == "series":
        yield node
    else:
        for arg in node.args:
            if isinstance(arg, Call | SetOf):
                yield from _leaves(arg)


_FUNCTIONS: dict[str, Callable[[Call, _Query], list[Line]]] = {
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
    "timeshift": _timeshift,
    "group_by": _group_by,
}


# -- options --------------------------------------------------------------------------------------


def _text(arg: Any) -> str:
    assert isinstance(arg, Text)
    return arg.value


def _choice(call: Call, key: str, choices: tuple[str, ...], default: str) -> str:
    value = str(call.options.get(key, default)).strip().lower()
    if value not in choices:
        raise CompositeSyntaxError(
            f"{call.name}() {key} must be one of {', '.join(choices)}", call.position
        )
    return value


def _whole(call: Call, key: str, default: int | None, *, least: int, most: int) -> int | None:
    raw = call.options.get(key)
    if raw is None:
        return default
    text = str(raw).strip()
    if not text.isdigit() or not least <= int(text) <= most:
        raise CompositeSyntaxError(
            f"{call.name}() {key} must be a whole number from {least} to {most}", call.position
        )
    return int(text)


def _flag(call: Call, key: str, default: bool) -> bool:
    raw = call.options.get(key)
    if raw is None:
        return default
    text = str(raw).strip().lower()
    if text not in ("true", "false"):
        raise CompositeSyntaxError(f"{call.name}() {key} must be true or false", call.position)
    return text == "true"


def _finite(line: Line) -> Line:
    keep = np.isfinite(line.values)
    if keep.all():
        return line
    return replace(line, times=line.times[keep], values=line.values[keep])
