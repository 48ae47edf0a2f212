"""What a chart's stream options mean for the drawn values, as Librato defines them: counters as
rates, `transform_function` formulas, and `thresholds`. Pure functions over numpy arrays.

A transform is parsed by a small recursive-descent parser into a tree of tuples and evaluated by
walking it, so a formula can only ever do arithmetic on `x` and `p`: there is no `eval`.

    formula := sum
    sum     := product (("+" | "-") product)*
    product := unary (("*" | "/") unary)*
    unary   := ("-" | "+") unary | atom
    atom    := number | "x" | "p" | "(" sum ")" | name "(" sum ("," sum)* ")"

Names are `abs`, `min`, `max`, `sqrt`, `log10`, `floor`, `ceil` and `round`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from snapshotd.errors import BadRequest

MAX_FORMULA = 255
MAX_DEPTH = 32
_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d*)?|\.\d+)|([A-Za-z_][A-Za-z_0-9]*)|(.))")
_FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int]] = {
    # name: (numpy function, fewest arguments, most arguments)
    "abs": (np.abs, 1, 1),
    "sqrt": (np.sqrt, 1, 1),
    "log10": (np.log10, 1, 1),
    "floor": (np.floor, 1, 1),
    "ceil": (np.ceil, 1, 1),
    "round": (np.round, 1, 1),
    "min": (np.minimum, 2, 8),
    "max": (np.maximum, 2, 8),
}
_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.divide,
}

Node = tuple[Any, ...]


class _Parser:
    def __init__(self, text: str, where: str) -> None:
        self.where = where
        self.tokens: list[tuple[str, str]] = []
        for match in _TOKEN.finditer(text):
            number, name, other = match.groups()
            if number is not None:
                self.tokens.append(("number", number))
            elif name is not None:
                self.tokens.append(("name", name.lower()))
            elif other is not None and not other.isspace():
                self.tokens.append(("op", other))
        self.at = 0
        self.depth = 0

    def fail(self, message: str) -> BadRequest:
        return BadRequest(message, field=self.where)

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, op: str) -> bool:
        if self.peek() == ("op", op):
            self.at += 1
            return True
        return False

    def expect(self, op: str) -> None:
        if not self.take(op):
            raise self.fail(f"expected {op!r}")

    def formula(self) -> Node:
        if not self.tokens:
            raise self.fail("is empty")
        tree = self.sum()
        if self.peek() is not None:
            raise self.fail(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return tree

    def sum(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"nests deeper than {MAX_DEPTH} levels")
        tree = self.product()
        while (token := self.peek()) in (("op", "+"), ("op", "-")):
            self.at += 1
            tree = ("op", token[1], tree, self.product())  # type: ignore[index]
        self.depth -= 1
        return tree

    def product(self) -> Node:
        tree = self.unary()
        while (token := self.peek()) in (("op", "*"), ("op", "/")):
            self.at += 1
            tree = ("op", token[1], tree, self.unary())  # type: ignore[index]
        return tree

    def unary(self) -> Node:
        if self.take("-"):
            return ("neg", self.unary())
        if self.take("+"):
            return self.unary()
        return self.atom()

    def atom(self) -> Node:
        token = self.peek()
        if token is None:
            raise self.fail("ends too early")
        kind, text = token
        self.at += 1
        if kind == "number":
            if not math.isfinite(value := float(text)):
                raise self.fail(f"{text} is out of range")
            return ("const", value)
        if kind == "op" and text == "(":
            inner = self.sum()
            self.expect(")")
            return inner
        if kind == "name" and text in ("x", "p"):
            return ("var", text)
        if kind == "name" and text in _FUNCTIONS:
            _function, fewest, most = _FUNCTIONS[text]
            self.expect("(")
            arguments = [self.sum()]
            while self.take(","):
                arguments.append(self.sum())
            self.expect(")")
            if not fewest <= len(arguments) <= most:
                raise self.fail(f"{text} takes {fewest} to {most} arguments")
            return ("call", text, *arguments)
        raise self.fail(f"unknown {text!r}: use x, p, numbers, + - * / ( ) and abs, min, max")


@dataclass(frozen=True)
class Transform:
    """A parsed `transform_function`; `apply` evaluates it on every value of a line."""

    text: str
    tree: Node

    def apply(self, values: np.ndarray, period: float) -> np.ndarray:
        with np.errstate(all="ignore"):
            result = np.asarray(_evaluate(self.tree, values, period), dtype=np.float64)
        result = np.broadcast_to(result, values.shape).copy()
        result[~np.isfinite(result)] = np.nan  # a division by zero leaves a gap, not a spike
        return result


def parse_transform(text: Any, where: str = "transform_function") -> Transform:
    if not isinstance(text, str) or len(text) > MAX_FORMULA:
        raise BadRequest(f"must be a formula of at most {MAX_FORMULA} characters", field=where)
    return Transform(text, _Parser(text, where).formula())


def _evaluate(node: Node, x: np.ndarray, p: float) -> Any:
    kind = node[0]
    if kind == "const":
        return node[1]
    if kind == "var":
        return x if node[1] == "x" else p
    if kind == "neg":
        return np.negative(_evaluate(node[1], x, p))
    if kind == "op":
        return _OPERATORS[node[1]](_evaluate(node[2], x, p), _evaluate(node[3], x, p))
    function = _FUNCTIONS[node[1]][0]
    arguments = [_evaluate(argument, x, p) for argument in node[2:]]
    if len(arguments) == 1:
        return function(arguments[0])
    result = arguments[0]
    for argument in arguments[1:]:
        result = function(result, argument)
    return result


# -- counters -------------------------------------------------------------------------------------


def counter_rates(
    times: np.ndarray, values: np.ndarray, per: float
) -> tuple[np.ndarray, np.ndarray]:
    """A counter's running totals as the increase per `per` seconds between consecutive points,
    drawn at the later point. A total lower than the one before means the counter restarted from
    zero, so the increase is the new total itself."""
    if times.size < 2:
        return times[:0], values[:0]
    increase = np.diff(values)
    restarted = increase < 0
    increase[restarted] = values[1:][restarted]
    elapsed = np.diff(times)
    return times[1:], increase / elapsed * per


# -- thresholds -----------------------------------------------------------------------------------

THRESHOLD_COLORS = {"red": "#D62728", "yellow": "#E6B400"}
_OPERATOR_TESTS: dict[str, Callable[[float, float], bool]] = {
    ">": lambda value, limit: value > limit,
    "<": lambda value, limit: value < limit,
    "=": lambda value, limit: value == limit,
}


@dataclass(frozen=True)
class Threshold:
    operator: str
    value: float
    type: str

    @property
    def color(self) -> str:
        return THRESHOLD_COLORS[self.type]

    @property
    def label(self) -> str:
        return f"{self.operator} {self.value:g}"

    def crossed_by(self, value: float) -> bool:
        return _OPERATOR_TESTS[self.operator](value, self.value)

    def as_dict(self) -> dict[str, Any]:
        return {"operator": self.operator, "value": self.value, "type": self.type}


def parse_thresholds(raw: Any, where: str = "thresholds") -> list[Threshold]:
    """Librato's `[{"operator": ">"|"<"|"=", "value": number, "type": "red"|"yellow"}]`."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > 10:
        raise BadRequest("must be a list of at most 10 thresholds", field=where)
    out = []
    for index, item in enumerate(raw):
        at = f"{where}.{index}"
        if not isinstance(item, dict):
            raise BadRequest("must be an object", field=at)
        operator, kind, value = item.get("operator"), item.get("type", "red"), item.get("value")
        if operator not in _OPERATOR_TESTS:
            raise BadRequest("must be >, < or =", field=f"{at}.operator")
        if kind not in THRESHOLD_COLORS:
            raise BadRequest("must be red or yellow", field=f"{at}.type")
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise BadRequest("is not a number", field=f"{at}.value")
        try:
            number = float(value)
        except ValueError:
            raise BadRequest("is not a number", field=f"{at}.value") from None
        if not math.isfinite(number):
            raise BadRequest("is not a number", field=f"{at}.value")
        out.append(Threshold(str(operator), number, str(kind)))
    return out


def threshold_color(value: float | None, thresholds: list[Threshold]) -> str | None:
    """The colour a big number takes: red when a red threshold is crossed, else yellow when a
    yellow one is, else none."""
    if value is None:
        return None
    crossed = {t.type for t in thresholds if t.crossed_by(value)}
    for kind in ("red", "yellow"):
        if kind in crossed:
            return THRESHOLD_COLORS[kind]
    return None
