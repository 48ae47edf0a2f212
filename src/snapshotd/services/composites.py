"""Composite metrics: Librato's composite expressions evaluated over stored series.

An expression (`composite_language.py` reads it) is a tree of functions over *sets of series*.
Its leaves, `series()`/`s()`, read stored series through `Metrics.read_values` (one query per
series, rolled up in SQL at the query's resolution, or at the `period` the call asks for);
`timeshift` and `group_by` evaluate their sub-expression again over another window or group, and
every other function is plain numpy over the series it is given (`composite_sets.py`). Nothing
here writes measurements: a stored composite metric is a metric row with `type: composite` and
its expression.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

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
from snapshotd.services.composite_sets import (
    SET_FUNCTIONS,
    Line,
    Span,
    choice,
    finite,
    text_of,
    whole,
)
from snapshotd.services.metrics import MAX_POINTS_PER_READ, Metrics, apply_changes
from snapshotd.services.samples import MetricChanges, check_name, wildcard
from snapshotd.store.models import Metric

SERIES_FUNCTIONS = {"mean": "average", "sum": "sum", "min": "min", "max": "max", "count": "count"}
MAX_SERIES = 2000
MAX_SHIFTS = 10
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


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
        return [finite(line) for line in lines]

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
        try:
            return self._store(org_id, name, expression, changes)
        except IntegrityError:
            # Another request created the name meanwhile: this one updates what it made.
            return self._store(org_id, name, expression, changes)

    def _store(
        self, org_id: str, name: str, expression: str | None, changes: MetricChanges
    ) -> bool:
        """The expression and the other properties, saved in one transaction."""
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
            apply_changes(metric, changes)
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
    if node.name == "timeshift":
        return _timeshift(node, query)
    if node.name == "group_by":
        return _group_by(node, query)
    span = Span(query.start, query.end)
    return SET_FUNCTIONS[node.name](node, _inputs(node, query), span)


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
    pattern = text_of(call.args[0])
    function = choice(call, "function", tuple(SERIES_FUNCTIONS), "mean")
    period = whole(call, "period", None, least=1, most=604800)
    tags = _tag_filter(call)
    if query.metrics is None:
        return []
    resolution = max(query.resolution, period or 1)
    key = (
        pattern.lower(),
        repr(sorted(tags.items())),
        function,
        resolution,
        query.start,
        query.end,
    )
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
    text = text_of(call.args[0]).strip().lower()
    unit = 1
    if text and text[-1] in _UNITS:
        unit, text = _UNITS[text[-1]], text[:-1]
    shifts = []
    for part in text.split(","):
        part = part.strip()
        forward = part.startswith("+")
        digits = part.lstrip("+-")
        if not (digits.isascii() and digits.isdigit()) or len(digits) > 6:
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
    names = [n.strip().lower() for n in text_of(call.args[0]).split(",") if n.strip()]
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
