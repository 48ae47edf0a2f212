"""What a measurement is and the rules it must meet, as Librato documents them.

Names are 1-255 of `A-Z a-z 0-9 . : - _` and case-insensitive; tag names and values (and legacy
sources, kept as the tag `source`) are lower-cased; values are finite, with base-10 exponents of
at most 126; times are Unix seconds, not far in the future. Every refusal is a BadRequest naming
the field, so each surface can say which one was wrong.
"""

from __future__ import annotations

import enum
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from snapshotd.errors import BadRequest

NAME = re.compile(r"^[A-Za-z0-9.:\-_]{1,255}$")
TAG_NAME = re.compile(r"^[-.:_\w]{1,64}$", re.ASCII)
TAG_VALUE = re.compile(r"^[-.:_?\\/\w ]{1,255}$", re.ASCII)
METRIC_TYPES = ("gauge", "counter")
MAX_TAGS = 50
MAX_FUTURE_SECONDS = 600
MAX_WHOLE = 2**31 - 1
MAX_PERIOD = 366 * 86400
_FLOAT_CEILING = 1e127  # Librato refuses base-10 exponents over 126 and zeroes those under -130
_FLOAT_FLOOR = 1e-130

Tags = tuple[tuple[str, str], ...]
TagFilter = Mapping[str, Sequence[str]]
Point = tuple[int, int, float, float, float]  # time, count, sum, min, max


@dataclass(frozen=True)
class Sample:
    name: str
    tags: Tags
    time: int
    count: int
    sum: float
    min: float
    max: float


@dataclass(frozen=True)
class MetricProps:
    """Metric properties a submission may carry; they apply only when it creates the metric."""

    type: str = "gauge"
    period: int | None = None
    display_name: str | None = None
    description: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


class Keep(enum.Enum):
    """A property a change leaves as it is (None would clear it)."""

    KEEP = "keep"


KEEP = Keep.KEEP


@dataclass(frozen=True)
class MetricChanges:
    """What an update sets on a metric; `type` matters only when the update creates it."""

    type: str | None = None
    period: int | None | Keep = KEEP
    display_name: str | None | Keep = KEEP
    description: str | None | Keep = KEEP
    attributes: dict[str, Any] | Keep = KEEP


# -- validation -----------------------------------------------------------------------------------


def check_name(name: Any, where: str = "name") -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise BadRequest(
            f"{name!r} is not a valid metric name: use 1-255 of A-Z a-z 0-9 . : - _", field=where
        )
    return name


def number(value: Any, where: str) -> float:
    """A finite JSON number (or numeric string, as form encoding sends), within Librato's range."""
    if isinstance(value, bool) or value is None:
        raise BadRequest("is not a number", field=where)
    try:
        result = float(value)
    except (TypeError, ValueError, OverflowError):
        raise BadRequest("is not a number", field=where) from None
    if not math.isfinite(result) or abs(result) >= _FLOAT_CEILING:
        raise BadRequest("is out of range (base-10 exponent over 126)", field=where)
    return 0.0 if abs(result) < _FLOAT_FLOOR else result


def whole(value: Any, where: str, *, least: int = 0, most: int = MAX_WHOLE) -> int:
    """A whole number in [least, most]; the ceiling keeps it inside a database integer column."""
    result = number(value, where)
    if result != int(result) or not least <= result <= most:
        raise BadRequest(f"must be a whole number from {least} to {most}", field=where)
    return int(result)


def period(value: Any, where: str = "period") -> int | None:
    """A metric's period: whole seconds, at least 1, at most a year; None when not given."""
    if value is None or value == "":
        return None
    return whole(value, where, least=1, most=MAX_PERIOD)


def epoch(value: Any, where: str, *, now: float | None = None) -> int:
    """Unix seconds, not in the future by more than MAX_FUTURE_SECONDS."""
    seconds = number(value, where)
    if seconds < 0:
        raise BadRequest("must be Unix seconds, not negative", field=where)
    if seconds > (now or time.time()) + MAX_FUTURE_SECONDS:
        raise BadRequest("is in the future (times are Unix seconds, not milliseconds)", field=where)
    return int(seconds)


def tag_set(raw: Any, where: str = "tags") -> Tags:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise BadRequest("must be an object of tag names to values", field=where)
    if len(raw) > MAX_TAGS:
        raise BadRequest(f"at most {MAX_TAGS} tags", field=where)
    tags = []
    for name, value in raw.items():
        text = (
            str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
        )
        if not isinstance(name, str) or not TAG_NAME.match(name):
            raise BadRequest(f"tag name {name!r} is invalid", field=where)
        if not isinstance(text, str) or not TAG_VALUE.match(text):
            raise BadRequest(f"tag {name!r} has an invalid value {value!r}", field=where)
        tags.append((name.lower(), text.lower()))
    return tuple(sorted(tags))


def sample(name: Any, fields: Mapping[str, Any], tags: Tags, when: int, where: str) -> Sample:
    """A sample from a plain `value`, or from the pre-aggregated `count` + `sum` (+ min, max)."""
    check_name(name, f"{where}.name")
    if fields.get("count") is not None:
        count = whole(fields["count"], f"{where}.count", least=1)
        if fields.get("sum") is None:
            raise BadRequest("is required with count", field=f"{where}.sum")
        total = number(fields["sum"], f"{where}.sum")
        mean = total / count
        low = number(fields["min"], f"{where}.min") if fields.get("min") is not None else mean
        high = number(fields["max"], f"{where}.max") if fields.get("max") is not None else mean
        return Sample(name, tags, when, count, total, low, high)
    if "value" not in fields:
        raise BadRequest("is required (or count and sum)", field=f"{where}.value")
    value = number(fields["value"], f"{where}.value")
    return Sample(name, tags, when, 1, value, value, value)


def tag_filter_matches(tags: Mapping[str, str], wanted: TagFilter) -> bool:
    """Each named tag must match one of its patterns (`*` wildcards; `!` negates)."""
    for name, patterns in wanted.items():
        value = tags.get(name.lower())
        positive = [p for p in patterns if not p.startswith("!")]
        negative = [p[1:] for p in patterns if p.startswith("!")]
        if any(value is not None and wildcard(p).match(value) for p in negative):
            return False
        if positive and (value is None or not any(wildcard(p).match(value) for p in positive)):
            return False
    return True


def wildcard(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(map(re.escape, pattern.lower().split("*"))) + "$")


def point_value(point: Point, function: str) -> float:
    _time, count, total, low, high = point
    if function == "sum":
        return total
    if function == "min":
        return low
    if function == "max":
        return high
    if function == "count":
        return float(count)
    return total / count
