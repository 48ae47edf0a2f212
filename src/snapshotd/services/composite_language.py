"""Librato's composite metric language, read into a tree by a small recursive-descent parser.

    expression := call | set
    set        := "[" [expression ("," expression)*] "]"
    call       := NAME "(" [argument ("," argument)*] ")"
    argument   := expression | STRING | NUMBER | options
    options    := "{" [key ":" value ("," key ":" value)*] "}"
    key        := NAME | STRING
    value      := STRING | NUMBER | NAME | "[" [value ("," value)*] "]"

Strings take double or single quotes with backslash escapes. Every refusal is a
`CompositeSyntaxError` carrying the 0-based character position where reading stopped, so the API
can say where an expression went wrong. Which functions exist and what arguments they take is
checked here too (`FUNCTIONS`), so a stored composite is known to be well formed; what the
functions compute is `composites.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

MAX_LENGTH = 4096
MAX_DEPTH = 32

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "/": "/", "n": "\n", "t": "\t"}


class CompositeSyntaxError(ValueError):
    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at position {position}")
        self.message = message
        self.position = position


@dataclass(frozen=True)
class Text:
    value: str
    position: int


@dataclass(frozen=True)
class Options:
    values: dict[str, Any]
    position: int


@dataclass(frozen=True)
class SetOf:
    items: tuple[Node, ...]
    position: int


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Argument, ...]
    position: int
    options: dict[str, Any] = field(default_factory=dict)


Node = Call | SetOf
Argument = Node | Text | Options


@dataclass(frozen=True)
class Signature:
    """The arguments a function takes, in order: `text` (a string), `set` (one or more series),
    `options` (a map, optional when last); `options` names the keys it accepts."""

    shape: tuple[str, ...]
    options: tuple[str, ...] = ()


_SET = Signature(("set",))
FUNCTIONS: dict[str, Signature] = {
    "series": Signature(("text", "tags", "options"), ("function", "period")),
    "sum": _SET,
    "mean": _SET,
    "min": _SET,
    "max": _SET,
    "multiply": _SET,
    "divide": _SET,
    "subtract": _SET,
    "abs": _SET,
    "integrate": _SET,
    "zero_fill": _SET,
    "last_fill": _SET,
    "scale": Signature(("set", "options"), ("factor",)),
    "derive": Signature(("set", "options"), ("detect_reset",)),
    "rate": Signature(("set", "options"), ("duration",)),
    "window": Signature(("set", "options"), ("size", "function")),
    "moving_average": Signature(("set", "options"), ("size",)),
    "fill": Signature(("set", "options"), ("value",)),
    "filter": Signature(("set", "options"), ("gt", "gte", "lt", "lte", "function")),
    "timeshift": Signature(("text", "set")),
    "group_by": Signature(("text", "set")),
}
ALIASES = {"s": "series"}


def parse(source: str) -> Node:
    """The tree of a composite expression; raises CompositeSyntaxError with a position."""
    if not isinstance(source, str) or not source.strip():
        raise CompositeSyntaxError("the composite expression is empty", 0)
    if len(source) > MAX_LENGTH:
        raise CompositeSyntaxError(f"longer than {MAX_LENGTH} characters", MAX_LENGTH)
    reader = _Reader(source)
    node = reader.expression(0)
    reader.skip_blanks()
    if reader.at < len(source):
        raise CompositeSyntaxError(
            f"unexpected {source[reader.at]!r} after the expression", reader.at
        )
    return node


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source
        self.at = 0

    # -- characters ---------------------------------------------------------------------------

    def skip_blanks(self) -> None:
        while self.at < len(self.source) and self.source[self.at].isspace():
            self.at += 1

    def peek(self) -> str:
        self.skip_blanks()
        return self.source[self.at] if self.at < len(self.source) else ""

    def expect(self, char: str) -> None:
        found = self.peek()
        if found != char:
            what = repr(found) if found else "the end"
            raise CompositeSyntaxError(f"expected {char!r} but found {what}", self.at)
        self.at += 1

    def match(self, pattern: re.Pattern[str]) -> str | None:
        self.skip_blanks()
        found = pattern.match(self.source, self.at)
        if found is None:
            return None
        self.at = found.end()
        return found.group()

    # -- grammar ------------------------------------------------------------------------------

    def expression(self, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise CompositeSyntaxError(f"nested deeper than {MAX_DEPTH} levels", self.at)
        start = self.at
        if self.peek() == "[":
            return self.set_of(depth)
        name = self.match(_NAME)
        if name is None:
            found = self.peek()
            what = repr(found) if found else "the end"
            raise CompositeSyntaxError(f"expected a function or a set but found {what}", self.at)
        start = self.at - len(name)
        canonical = ALIASES.get(name, name)
        if canonical not in FUNCTIONS:
            raise CompositeSyntaxError(f"unknown function {name!r}", start)
        if self.at >= len(self.source) or self.source[self.at] != "(":
            raise CompositeSyntaxError(f"expected '(' right after {name!r}", self.at)
        self.at += 1
        args: list[Argument] = []
        if self.peek() != ")":
            args.append(self.argument(depth))
            while self.peek() == ",":
                self.at += 1
                args.append(self.argument(depth))
        self.expect(")")
        return _checked(canonical, tuple(args), start)

    def set_of(self, depth: int) -> SetOf:
        start = self.at
        self.expect("[")
        items: list[Node] = []
        if self.peek() != "]":
            items.append(self.expression(depth + 1))
            while self.peek() == ",":
                self.at += 1
                items.append(self.expression(depth + 1))
        self.expect("]")
        return SetOf(tuple(items), start)

    def argument(self, depth: int) -> Argument:
        char = self.peek()
        start = self.at
        if char in ('"', "'"):
            return Text(self.string(), start)
        if char == "{":
            return Options(self.options(), start)
        if _NUMBER.match(self.source, self.at):
            return Text(self.match(_NUMBER) or "", start)
        return self.expression(depth + 1)

    def string(self) -> str:
        quote = self.source[self.at]
        start = self.at
        self.at += 1
        out: list[str] = []
        while self.at < len(self.source):
            char = self.source[self.at]
            if char == quote:
                self.at += 1
                return "".join(out)
            if char == "\\":
                following = self.source[self.at + 1 : self.at + 2]
                if following not in _ESCAPES:
                    raise CompositeSyntaxError("unknown escape in a string", self.at)
                out.append(_ESCAPES[following])
                self.at += 2
                continue
            out.append(char)
            self.at += 1
        raise CompositeSyntaxError("a string is not closed", start)

    def options(self) -> dict[str, Any]:
        self.expect("{")
        values: dict[str, Any] = {}
        if self.peek() != "}":
            self.pair(values)
            while self.peek() == ",":
                self.at += 1
                self.pair(values)
        self.expect("}")
        return values

    def pair(self, values: dict[str, Any]) -> None:
        start = self.at
        key = self.string() if self.peek() in ('"', "'") else self.match(_NAME)
        if key is None:
            raise CompositeSyntaxError("expected an option name", self.at)
        if key in values:
            raise CompositeSyntaxError(f"option {key!r} is given twice", start)
        self.expect(":")
        values[key] = self.value()

    def value(self) -> Any:
        char = self.peek()
        if char in ('"', "'"):
            return self.string()
        if char == "[":
            self.at += 1
            items: list[Any] = []
            if self.peek() != "]":
                items.append(self.value())
                while self.peek() == ",":
                    self.at += 1
                    items.append(self.value())
            self.expect("]")
            return items
        found = self.match(_NUMBER) or self.match(_NAME)
        if found is None:
            what = repr(char) if char else "the end"
            raise CompositeSyntaxError(f"expected a value but found {what}", self.at)
        return found


def _checked(name: str, args: tuple[Argument, ...], position: int) -> Call:
    """A call whose arguments fit its signature; its options map is lifted onto the call."""
    signature = FUNCTIONS[name]
    shape = signature.shape
    given = list(args)
    options: dict[str, Any] = {}
    if len(given) == len(shape) and isinstance(given[-1], Options) and shape[-1] == "options":
        last = given.pop()
        assert isinstance(last, Options)
        options = last.values
        for key in options:
            if key not in signature.options:
                allowed = ", ".join(signature.options) or "none"
                raise CompositeSyntaxError(
                    f"{name}() takes no option {key!r} (options: {allowed})", last.position
                )
    wanted = [kind for kind in shape if kind != "options"]
    if name == "series" and len(given) == 1:
        given.append(Text("*", position))  # the source may be left out: every series
    if len(given) != len(wanted) and not (wanted == ["set"] and len(given) > 1):
        raise CompositeSyntaxError(
            f"{name}() takes {_describe(shape)}, not {len(args)} argument(s)", position
        )
    if wanted == ["set"] and len(given) > 1:  # sum(a, b) reads as sum([a, b])
        nodes = [_node(arg, name) for arg in given]
        return Call(name, (SetOf(tuple(nodes), position),), position, options)
    for kind, arg in zip(wanted, given, strict=True):
        if kind == "text" and not isinstance(arg, Text):
            raise CompositeSyntaxError(f"{name}() needs a quoted string here", _where(arg))
        if kind == "set":
            _node(arg, name)
        if kind == "tags" and not isinstance(arg, Text | Options):
            raise CompositeSyntaxError(
                f"{name}() needs a source string or a map of tags here", _where(arg)
            )
    return Call(name, tuple(given), position, options)


def _node(arg: Argument, name: str) -> Node:
    if not isinstance(arg, Call | SetOf):
        raise CompositeSyntaxError(f"{name}() needs a set of series here", _where(arg))
    return arg


def _where(arg: Argument) -> int:
    return arg.position


def _describe(shape: tuple[str, ...]) -> str:
    words = {"text": "a string", "set": "a set", "tags": "tags", "options": "an options map"}
    return ", ".join(words[kind] for kind in shape)
