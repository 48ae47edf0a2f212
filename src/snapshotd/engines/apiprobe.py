"""API probe: a sequence of HTTP requests run in order, each checked by its assertions, with values
taken from one response (a JSON path into its body) and substituted into later requests as
`{{name}}`.

Every request goes through the egress guard as a proxy, so the guard resolves each name (redirect
hops included), checks the address and connects to exactly that address; a refusal is the step's
error, with the guard's reason. Because the guard resolves and connects, a step's DNS and connect
times are part of its wait time; the step records send, wait (first byte), receive, the API call
as a whole, and the processing after it (assertions, variables and the step's own wait).

A step that cannot be sent, or whose response lacks a variable it should set, ends the round; a
failed assertion fails its step and the round goes on. `run_api` never raises for a problem with
the target.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field

from snapshotd.engines.egress import EgressPolicy
from snapshotd.engines.guard import DENIED_HEADER, EgressGuard
from snapshotd.errors import EgressDenied, InvalidURL
from snapshotd.timestamps import iso

__all__ = [
    "ASSERTION_NAMES",
    "OPERATORS",
    "ApiResult",
    "ApiStep",
    "Assertion",
    "StepResult",
    "json_path",
    "run_api",
    "variable_names",
]

MAX_BODY_BYTES = 5 * 1024 * 1024
METHODS = ("get", "post", "put", "delete", "patch")
ASSERTION_NAMES = ("status-code", "response-body", "response-header")
OPERATORS = {
    "status-code": ("is", "is-not"),
    "response-body": ("is", "is-not", "includes", "not-includes", "matches", "not-matches"),
    "response-header": ("is", "is-not", "includes", "not-includes", "matches", "not-matches"),
}
_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\}\}")
_PATH_PART = re.compile(
    r"\.([A-Za-z_$][\w$-]*)|\[(-?\d+)\]|\[\s*'([^']*)'\s*\]|\[\s*\"([^\"]*)\"\s*\]"
)


class Assertion(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: Literal["status-code", "response-body", "response-header"]
    operator: str
    value: str


class ApiStep(BaseModel):
    """One request of an API test. `variables` maps a name to the JSON path of its value in this
    step's response body."""

    model_config = ConfigDict(frozen=True)

    name: str
    url: str
    method: Literal["get", "post", "put", "delete", "patch"] = "get"
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None
    assertions: tuple[Assertion, ...] = ()
    variables: tuple[tuple[str, str], ...] = ()
    wait_ms: int = Field(default=0, ge=0, le=60_000)
    verify_certificate: bool = False


def variable_names(text: str) -> list[str]:
    return _VARIABLE.findall(text)


def json_path(document: Any, path: str) -> Any:
    """The value at `path` (`$`, `.key`, `['key']`, `[index]`) in `document`; LookupError if the
    path leads nowhere, ValueError if it is not such a path."""
    path = path.strip()
    if not path.startswith("$"):
        raise ValueError(f"{path!r} is not a JSON path (it starts with $)")
    position, value = 1, document
    while position < len(path):
        match = _PATH_PART.match(path, position)
        if match is None:
            raise ValueError(f"{path!r} is not a JSON path this probe reads ($.a.b[0]['c'])")
        key, index, quoted, double = match.groups()
        if index is not None:
            if not isinstance(value, list):
                raise LookupError(f"{path}: not a list at [{index}]")
            try:
                value = value[int(index)]
            except IndexError:
                raise LookupError(f"{path}: no item {index}") from None
        else:
            name = next(part for part in (key, quoted, double) if part is not None)
            if not isinstance(value, dict) or name not in value:
                raise LookupError(f"{path}: no {name!r}")
            value = value[name]
        position = match.end()
    return value


@dataclass
class AssertionResult:
    step: int
    name: str
    operator: str
    value: str
    has_failed: bool
    detail: str


@dataclass
class StepResult:
    step_number: int
    name: str
    method: str
    url: str
    status_code: int | None = None
    send_time: float | None = None
    wait_time: float | None = None
    receive_time: float | None = None
    response_time: float | None = None
    api_call_time: float | None = None
    processing_time: float | None = None
    step_time: float | None = None
    wire_size: int | None = None
    assertions: list[AssertionResult] = field(default_factory=list)
    error_type: str | None = None
    error_details: str | None = None

    @property
    def passed(self) -> bool:
        return self.error_type is None and not any(a.has_failed for a in self.assertions)


@dataclass
class ApiResult:
    date: datetime
    steps: list[StepResult] = field(default_factory=list)
    api_transaction_time: float | None = None
    completion: float = 0.0
    error_type: str | None = None
    error_details: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["date"] = iso(self.date)
        return data


class _Stop(Exception):
    """A step that cannot go on: (error_type, error_details)."""


def _substitute(text: str, values: Mapping[str, str], where: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise _Stop("Variable", f"{where} uses {{{{{name}}}}}, which nothing set before it")
        return values[name]

    return _VARIABLE.sub(value, text)


def _ms(start: float, stop: float | None) -> float | None:
    return None if stop is None else round((stop - start) * 1000, 1)


def _subject(
    assertion: Assertion, response: httpx.Response, text: str
) -> tuple[str | None, str, str]:
    """What an assertion compares, the value it compares it with, and what to call the first."""
    if assertion.name == "status-code":
        return str(response.status_code), assertion.value.strip(), "status-code"
    if assertion.name == "response-header":
        header, _, expected = assertion.value.partition(":")
        return response.headers.get(header.strip()), expected.strip(), f"header {header.strip()}"
    if not assertion.value.startswith("$"):
        return text, assertion.value, "response-body"
    path, _, expected = assertion.value.partition("=")
    label = f"response-body {path.strip()}"
    try:
        found = json_path(json.loads(text), path)
    except (LookupError, ValueError):
        return None, expected.strip(), label
    return (found if isinstance(found, str) else json.dumps(found)), expected.strip(), label


def _assert(
    number: int, assertion: Assertion, response: httpx.Response, text: str
) -> AssertionResult:
    subject, expected, label = _subject(assertion, response, text)
    op = assertion.operator
    if subject is None:
        passed = False
        detail = f"{label}: not in the response"
    else:
        if op in ("is", "is-not"):
            hit = subject == expected
        elif op in ("includes", "not-includes"):
            hit = expected in subject
        else:
            hit = re.search(expected, subject) is not None
        passed = hit != op.startswith(("is-not", "not-"))
        shown = subject if len(subject) <= 80 else subject[:77] + "..."
        detail = f"{label} {op} {expected!r}: got {shown!r}"
    return AssertionResult(number, assertion.name, op, assertion.value, not passed, detail)


def _refusal(guard: EgressGuard, url: str, since: datetime) -> str:
    host = (urlsplit(url).hostname or "").lower()
    reasons = [d.reason for d in guard.denials if d.at >= since and d.host.lower() == host]
    return reasons[-1] if reasons else "the egress guard refused the connection"


async def _send(
    client: httpx.AsyncClient,
    guard: EgressGuard,
    policy: EgressPolicy,
    step: ApiStep,
    result: StepResult,
    values: Mapping[str, str],
    follow_redirects: bool,
) -> tuple[httpx.Response, str]:
    where = "the request"
    url = _substitute(step.url, values, where)
    headers = [
        (_substitute(n, values, where), _substitute(v, values, where)) for n, v in step.headers
    ]
    body = None if step.body is None else _substitute(step.body, values, where).encode()
    result.url = url
    try:
        policy.check_url(url)
    except (InvalidURL, EgressDenied) as error:
        raise _Stop("Egress" if isinstance(error, EgressDenied) else "URL", error.detail) from None
    marks: dict[str, float] = {}

    async def trace(name: str, info: dict[str, Any]) -> None:
        # Through the guard an https request is a CONNECT and then the request itself: the
        # last mark of each phase is the request's own.
        marks[name.partition(".")[2]] = time.perf_counter()

    since, started = datetime.now(UTC), time.perf_counter()
    chunks: list[bytes] = []
    size = 0
    try:
        async with client.stream(
            step.method.upper(),
            url,
            headers=headers,
            content=body,
            follow_redirects=follow_redirects,
            extensions={"trace": trace},
        ) as response:
            if response.headers.get(DENIED_HEADER) == "denied":
                raise _Stop("Egress", _refusal(guard, str(response.url), since))
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    break
                chunks.append(chunk)
    except httpx.ProxyError as error:
        raise _Stop("Egress", f"{_refusal(guard, url, since)} ({error})") from None
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as error:
        # Values from a response may make a header or URL httpx will not send.
        kind = "Send"
        if isinstance(error, httpx.TimeoutException):
            kind = "Timeout"
        elif isinstance(error, httpx.TransportError):
            kind = "Connect"
        raise _Stop(kind, f"{type(error).__name__}: {error}") from None
    ended = time.perf_counter()
    first_byte = marks.get("receive_response_headers.complete")
    sent = marks.get("send_request_body.complete")
    result.status_code = response.status_code
    result.wire_size = size
    if "send_request_headers.started" in marks:
        result.send_time = _ms(marks["send_request_headers.started"], sent)
    if sent is not None:
        result.wait_time = _ms(sent, first_byte)
    if first_byte is not None:
        result.receive_time = _ms(first_byte, ended)
    result.response_time = _ms(started, first_byte)
    result.api_call_time = _ms(started, ended)
    return response, b"".join(chunks).decode(response.encoding or "utf-8", errors="replace")


async def run_api(
    steps: Sequence[ApiStep],
    *,
    http: httpx.AsyncClient,
    guard: EgressGuard,
    policy: EgressPolicy,
    variables: Mapping[str, str] | None = None,
    time_limit_s: float = 30.0,
    follow_redirects: bool = True,
) -> ApiResult:
    """Run `steps` in order through `http` (a client whose proxy is `guard`). Steps that skip
    certificate checks use a client of their own on the same guard."""
    values = dict(variables or {})
    result = ApiResult(date=datetime.now(UTC))
    loose: httpx.AsyncClient | None = None
    began = time.perf_counter()
    try:
        async with asyncio.timeout(time_limit_s):
            for number, step in enumerate(steps, 1):
                outcome = StepResult(number, step.name, step.method, step.url)
                result.steps.append(outcome)
                client = http
                if not step.verify_certificate:
                    loose = loose or httpx.AsyncClient(
                        proxy=guard.url, verify=False, trust_env=False, timeout=None
                    )
                    client = loose
                try:
                    response, text = await _send(
                        client, guard, policy, step, outcome, values, follow_redirects
                    )
                    processing = time.perf_counter()
                    outcome.assertions = [
                        _assert(i, a, response, text) for i, a in enumerate(step.assertions, 1)
                    ]
                    _extract(step, outcome, text, values)
                    if step.wait_ms:
                        await asyncio.sleep(step.wait_ms / 1000)
                    outcome.processing_time = _ms(processing, time.perf_counter())
                    outcome.step_time = round(
                        (outcome.api_call_time or 0) + (outcome.processing_time or 0), 1
                    )
                except _Stop as stop:
                    outcome.error_type, outcome.error_details = stop.args
                    break
    except TimeoutError:
        last = result.steps[-1] if result.steps else StepResult(1, "", "get", "")
        last.error_type = "Timeout"
        last.error_details = f"the steps did not finish within {time_limit_s:g} s"
    finally:
        if loose is not None:
            await loose.aclose()
    _summarise(result, len(steps), time.perf_counter() - began)
    return result


def _extract(step: ApiStep, outcome: StepResult, text: str, values: dict[str, str]) -> None:
    if not step.variables:
        return
    try:
        document = json.loads(text)
    except ValueError:
        raise _Stop("Variable", f"the response of {step.name!r} is not JSON") from None
    for name, path in step.variables:
        try:
            found = json_path(document, path)
        except (LookupError, ValueError) as error:
            raise _Stop("Variable", f"variable {name}: {error}") from None
        values[name] = found if isinstance(found, str) else json.dumps(found)


def _summarise(result: ApiResult, planned: int, seconds: float) -> None:
    passed = sum(step.passed for step in result.steps)
    result.completion = round(100 * passed / planned, 1) if planned else 0.0
    result.api_transaction_time = round(seconds * 1000, 1)
    for step in result.steps:
        failed = [a for a in step.assertions if a.has_failed]
        if step.error_type is not None:
            result.error_type = step.error_type
            result.error_details = f"step {step.step_number} ({step.name}): {step.error_details}"
            break
        if failed:
            result.error_type = "Assertion"
            result.error_details = (
                f"step {step.step_number} ({step.name}): assertion {failed[0].step} failed: "
                f"{failed[0].detail}"
            )
            break
