"""DNS server and API tests: their settings, checked when a test is saved, and how their rounds are
summed up for charts and share pages.

A test's kind-specific settings live in its `config` under one key (`dns` or `api`), in
snapshotd's own names; a dialect hands over the fields a request set, they are merged over the
stored ones and the whole is validated again, so an update may send only what changes.

Saving a DNS server test resolves each server and refuses one the egress policy would not reach
(a round checks again, since a name may change). An API test's step URLs are checked for their
form only: whether their hosts may be reached is decided by the egress guard every round, and a
refusal is recorded as that step's error.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from snapshotd.engines import dnsprobe
from snapshotd.engines.apiprobe import OPERATORS, ApiStep, json_path, variable_names
from snapshotd.engines.egress import EgressPolicy
from snapshotd.errors import BadRequest, EgressDenied, InvalidURL
from snapshotd.store.models import SyntheticTest

KINDS = ("dns-server", "api")
SETTINGS_KEY = {"dns-server": "dns", "api": "api"}
# What a create must name besides the kind's own settings.
REQUIRED = {"dns-server": ("interval",), "api": ("url", "interval")}
MAX_SERVERS = 10
MAX_STEPS = 50
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class DnsSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    domain: str
    record_type: str = "ANY"
    servers: tuple[str, ...]
    protocol: Literal["udp", "tcp"] = "udp"
    recursion: bool = True
    time_limit: int = Field(default=5, ge=1, le=30)

    @property
    def target(self) -> str:
        return f"{self.domain} {self.record_type}"


class ApiSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    steps: tuple[ApiStep, ...]
    variables: tuple[tuple[str, str], ...] = ()
    time_limit: int = Field(default=30, ge=5, le=180)
    follow_redirects: bool = True


def dns_settings(test: SyntheticTest) -> DnsSettings:
    return DnsSettings.model_validate((test.config or {}).get("dns") or {})


def api_settings(test: SyntheticTest) -> ApiSettings:
    return ApiSettings.model_validate((test.config or {}).get("api") or {})


def merge(test: SyntheticTest, given: Mapping[str, Any]) -> None:
    """Sets the fields a request gave over the stored settings (checked by `settle`)."""
    key = SETTINGS_KEY[test.type]
    config = dict(test.config or {})
    config[key] = {**(config.get(key) or {}), **given}
    test.config = config


def settle(policy: EgressPolicy, test: SyntheticTest) -> None:
    """Checks a DNS server or API test's settings as they will be saved, and stores them in their
    normal form; BadRequest naming the field that is wrong. Other kinds pass untouched."""
    settings: DnsSettings | ApiSettings
    if test.type == "dns-server":
        settings = _dns(policy, (test.config or {}).get("dns") or {})
        test.url = settings.target
    elif test.type == "api":
        settings = _api(policy, (test.config or {}).get("api") or {})
    else:
        return
    key = SETTINGS_KEY[test.type]
    test.config = {**(test.config or {}), key: settings.model_dump(mode="json")}


def _first_error(error: ValidationError) -> str:
    problem = error.errors()[0]
    where = ".".join(str(part) for part in problem["loc"])
    return f"{where}: {problem['msg']}" if where else problem["msg"]


def _dns(policy: EgressPolicy, raw: Mapping[str, Any]) -> DnsSettings:
    if raw.get("target") is not None:
        try:
            domain, record_type = dnsprobe.parse_domain(raw["target"])
        except ValueError as error:
            raise BadRequest(str(error), field="domain") from None
        raw = {**raw, "domain": domain, "record_type": record_type}
    if not raw.get("domain"):
        raise BadRequest(
            "is required: a domain and a record type, such as example.com A", field="domain"
        )
    if not raw.get("servers"):
        raise BadRequest("is required: name at least one DNS server", field="dnsServers")
    try:
        settings = DnsSettings.model_validate(raw)
    except ValidationError as error:
        raise BadRequest(_first_error(error), field="dnsServers") from None
    if len(settings.servers) > MAX_SERVERS:
        raise BadRequest(f"name at most {MAX_SERVERS} servers", field="dnsServers")
    servers = []
    for text in settings.servers:
        try:
            server = dnsprobe.parse_server(text)
        except ValueError as error:
            raise BadRequest(str(error), field="dnsServers") from None
        _reachable(policy, server)
        servers.append(str(server))
    return settings.model_copy(update={"servers": tuple(dict.fromkeys(servers))})


def _reachable(policy: EgressPolicy, server: dnsprobe.Server) -> None:
    """Refuses a server whose address the egress policy would not let a round reach."""
    try:
        addresses = [ipaddress.ip_address(server.host)]
    except ValueError:
        try:
            infos = socket.getaddrinfo(server.host, server.port, type=socket.SOCK_DGRAM)
        except (OSError, UnicodeError):
            raise BadRequest(
                f"could not resolve DNS server {server.host!r}", field="dnsServers"
            ) from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(str(i[4][0])) for i in infos))
    try:
        policy.choose(server.host, addresses)
    except EgressDenied as error:
        raise EgressDenied(f"DNS server {server}: {error.detail}", field="dnsServers") from None


def _api(policy: EgressPolicy, raw: Mapping[str, Any]) -> ApiSettings:
    if not raw.get("steps"):
        raise BadRequest("is required: at least one request", field="requests")
    try:
        settings = ApiSettings.model_validate(raw)
    except ValidationError as error:
        raise BadRequest(_first_error(error), field="requests") from None
    if len(settings.steps) > MAX_STEPS:
        raise BadRequest(f"at most {MAX_STEPS} requests", field="requests")
    known = {name for name, _ in settings.variables}
    names: set[str] = set()
    for number, step in enumerate(settings.steps, 1):
        where = f"requests[{number - 1}]"
        if not step.name.strip() or step.name in names:
            raise BadRequest(f"{where}: every request needs a name of its own", field="requests")
        names.add(step.name)
        _check_step(policy, step, where, known)
        known |= {name for name, _ in step.variables}
    return settings


def _check_step(policy: EgressPolicy, step: ApiStep, where: str, known: set[str]) -> None:
    texts = [step.url, step.body or "", *(part for header in step.headers for part in header)]
    for name in (n for text in texts for n in variable_names(text)):
        if name not in known:
            raise BadRequest(
                f"{where} uses {{{{{name}}}}}, which no predefined variable or earlier request "
                "sets",
                field="requests",
            )
    for name, value in step.headers:
        if not _HEADER_NAME.fullmatch(variable_free(name)) or any(c in value for c in "\r\n\0"):
            raise BadRequest(
                f"{where}: {name!r} is not a header this probe can send", field="requests"
            )
    if not variable_names(step.url):
        try:
            policy.check_url(step.url)
        except InvalidURL as error:
            raise BadRequest(f"{where}.url: {error.detail}", field="requests") from None
        except BadRequest:
            pass  # an address the guard refuses: each round records the refusal
    for assertion in step.assertions:
        if assertion.operator not in OPERATORS[assertion.name]:
            allowed = ", ".join(OPERATORS[assertion.name])
            raise BadRequest(
                f"{where}: a {assertion.name} assertion takes {allowed}", field="requests"
            )
        _check_value(assertion.name, assertion.operator, assertion.value, where)
    for name, path in step.variables:
        if not name or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", name):
            raise BadRequest(f"{where}: {name!r} is not a variable name", field="requests")
        _check_path(path, where)


def variable_free(text: str) -> str:
    """`text` with each `{{name}}` standing in as a plain token, for checking its form."""
    return re.sub(r"\{\{[^}]*\}\}", "x", text)


def _check_value(name: str, operator: str, value: str, where: str) -> None:
    expected = value
    if name == "status-code" and not (value.strip().isdigit() and len(value.strip()) == 3):
        raise BadRequest(f"{where}: a status-code assertion needs a status code", field="requests")
    if name == "response-header":
        header, colon, expected = value.partition(":")
        if not colon or not header.strip():
            raise BadRequest(
                f"{where}: a response-header assertion reads `Name: value`", field="requests"
            )
    if name == "response-body" and value.startswith("$"):
        path, _, expected = value.partition("=")
        _check_path(path, where)
    if operator.endswith("matches"):
        try:
            re.compile(expected.strip())
        except re.error as error:
            raise BadRequest(
                f"{where}: {expected!r} is not a regular expression: {error}", field="requests"
            ) from None


def _check_path(path: str, where: str) -> None:
    try:
        json_path({}, path)
    except LookupError:
        pass
    except ValueError as error:
        raise BadRequest(f"{where}: {error}", field="requests") from None


# -- rounds, summed up ----------------------------------------------------------------------------


def measures(kind: str, result: Mapping[str, Any]) -> list[tuple[str, float]]:
    """The values a test window's chart draws for one round: (line label, milliseconds)."""
    if kind == "dns-server":
        return [
            (answer["server"], float(answer["resolution_time"]))
            for answer in result.get("servers") or []
            if answer.get("resolution_time") is not None
        ]
    if kind == "api":
        return [
            (f"{step['step_number']}. {step['name']}", float(step["step_time"]))
            for step in result.get("steps") or []
            if step.get("step_time") is not None
        ]
    measured = result.get("response_time")
    return [] if measured is None else [("", float(measured))]


CHART_TITLES = {"dns-server": "resolution time (ms)", "api": "step time (ms)"}


def round_lines(kind: str, result: Mapping[str, Any]) -> list[str]:
    """What a share page lists under a round: each server's answer, or each step's timings and
    assertions."""
    if kind == "dns-server":
        return [_dns_line(answer) for answer in result.get("servers") or []]
    if kind == "api":
        return [_step_line(step) for step in result.get("steps") or []]
    return []


def _dns_line(answer: Mapping[str, Any]) -> str:
    protocol = "udp, then tcp" if answer.get("retried_over_tcp") else answer["protocol"]
    head = f"{answer['server']} ({protocol})"
    if answer.get("resolution_time") is not None:
        head += f" {answer['resolution_time']} ms {answer.get('response_code')}"
    records = "; ".join(
        f"{r['name']} {r['ttl']} {r['type']} {r['data']}" for r in answer.get("answer") or []
    )
    problem = answer.get("error_details")
    return " — ".join(part for part in (head, records, problem) if part)


def _step_line(step: Mapping[str, Any]) -> str:
    head = f"{step['step_number']}. {step['name']}: {step['method'].upper()} {step['url']}"
    if step.get("status_code") is not None:
        head += (
            f" → {step['status_code']} in {step.get('step_time')} ms (send {step.get('send_time')},"
            f" wait {step.get('wait_time')}, receive {step.get('receive_time')})"
        )
    checks = "; ".join(
        f"{'FAILED' if a['has_failed'] else 'passed'}: {a['detail']}"
        for a in step.get("assertions") or []
    )
    problem = step.get("error_details")
    return " — ".join(part for part in (head, checks, problem) if part)
