"""ThousandEyes v7 `dns-server` and `api` tests: their request bodies read into snapshotd's
settings, tests and results written back in the SDK's shapes (`DnsServerTestResponse`,
`ApiTestResponse`, `DnsServerTestResult`, `ApiTestResult`, `ApiDetailTestResult`), and the
per-agent, per-round detail of an API test's steps.

The fields every test type shares are read and written by bodies.py; this module adds what the
two types have of their own, and passes the other types through to bodies.py unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from snapshotd.errors import BadRequest, NotFound
from snapshotd.http.deps import ServicesDep, credentials, public_base
from snapshotd.http.dialects.thousandeyes import bodies
from snapshotd.http.dialects.thousandeyes.common import HalJSON, hal, scope
from snapshotd.http.wire import principal_factory
from snapshotd.services.accounts import Principal
from snapshotd.services.dns_api_tests import KINDS, SETTINGS_KEY
from snapshotd.services.records import Agent, ProbeRound, SyntheticTest
from snapshotd.services.synthetic import TestFields

router = APIRouter(prefix="/v7", tags=["thousandeyes v7"], default_response_class=HalJSON)
Viewer = Annotated[
    Principal,
    Depends(principal_factory(lambda request: credentials(request, basic=False))("view")),
]

_TRANSPORTS = ("udp", "tcp")
_NEVER_RETURNED = ("password", "bearerToken", "clientSecret")


def _bad(field: str, message: str) -> BadRequest:
    return BadRequest(f"{field}: {message}", field=field)


def _string(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise _bad(field, "must be a string")
    return value


def _list(value: Any, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise _bad(field, "must be a list")
    return value


# -- requests -------------------------------------------------------------------------------------


def test_fields(kind: str, body: Mapping[str, Any], *, creating: bool) -> TestFields:
    """A v7 test request body of any type; DNS server and API tests get their own settings."""
    if kind not in KINDS:
        return bodies.test_fields(body, creating=creating)
    shared = {key: value for key, value in body.items() if key != "url" or kind == "api"}
    fields = bodies.test_fields(shared, creating=creating)
    fields.settings = _dns_settings(body) if kind == "dns-server" else _api_settings(body)
    return fields


def _dns_settings(body: Mapping[str, Any]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if body.get("domain") is not None:
        settings["target"] = _string(body["domain"], "domain")
    if body.get("dnsServers") is not None:
        servers = []
        for item in _list(body["dnsServers"], "dnsServers"):
            name = item.get("serverName") if isinstance(item, dict) else item
            servers.append(_string(name, "dnsServers"))
        settings["servers"] = servers
    if body.get("dnsTransportProtocol") is not None:
        protocol = _string(body["dnsTransportProtocol"], "dnsTransportProtocol").lower()
        if protocol not in _TRANSPORTS:
            raise _bad("dnsTransportProtocol", "must be udp or tcp")
        settings["protocol"] = protocol
    if body.get("recursiveQueries") is not None:
        if not isinstance(body["recursiveQueries"], bool):
            raise _bad("recursiveQueries", "must be true or false")
        settings["recursion"] = body["recursiveQueries"]
    query_class = body.get("dnsQueryClass")
    if query_class is not None and query_class != "in":
        raise _bad("dnsQueryClass", "snapshotd asks in the Internet class only: use in")
    return settings


def _pairs(raw: Any, field: str, key: str, value: str) -> list[list[str]]:
    pairs = []
    for item in _list(raw, field):
        if not isinstance(item, dict):
            raise _bad(field, f"each item is an object with {key} and {value}")
        pairs.append(
            [_string(item.get(key), f"{field}.{key}"), _string(item.get(value, ""), field)]
        )
    return pairs


def _triples(raw: Any) -> list[tuple[str, str, str]]:
    triples = []
    for item in _list(raw, "requests.assertions"):
        if not isinstance(item, dict):
            raise _bad("requests.assertions", "each is an object with name, operator and value")
        triples.append(
            (
                _string(item.get("name"), "requests.assertions.name"),
                _string(item.get("operator"), "requests.assertions.operator"),
                _string(item.get("value", ""), "requests.assertions.value"),
            )
        )
    return triples


def _api_settings(body: Mapping[str, Any]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if body.get("requests") is not None:
        settings["steps"] = [_step(item) for item in _list(body["requests"], "requests")]
    if body.get("predefinedVariables") is not None:
        settings["variables"] = _pairs(
            body["predefinedVariables"], "predefinedVariables", "name", "value"
        )
    if body.get("timeLimit") is not None:
        limit = body["timeLimit"]
        if isinstance(limit, bool) or not isinstance(limit, int) or not 5 <= limit <= 180:
            raise _bad("timeLimit", "must be a whole number of seconds from 5 to 180")
        settings["time_limit"] = limit
    if body.get("followRedirects") is not None:
        settings["follow_redirects"] = body["followRedirects"]
    return settings


def _step(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise _bad("requests", "each request is an object with a name and a url")
    auth = item.get("authType") or "none"
    if auth != "none":
        raise _bad(
            "requests",
            f"authType {auth} is not run by snapshotd: send an Authorization header instead",
        )
    step: dict[str, Any] = {
        "name": _string(item.get("name"), "requests.name"),
        "url": _string(item.get("url"), "requests.url").strip(),
        "method": _string(item.get("method") or "get", "requests.method").lower(),
        "verify_certificate": item.get("verifyCertificate", False),
    }
    if item.get("headers") is not None:
        step["headers"] = _pairs(item["headers"], "requests.headers", "key", "value")
    if item.get("body") is not None:
        step["body"] = _string(item["body"], "requests.body")
    if item.get("assertions") is not None:
        step["assertions"] = [
            dict(zip(("name", "operator", "value"), pair, strict=True))
            for pair in _triples(item["assertions"])
        ]
    if item.get("variables") is not None:
        step["variables"] = _pairs(item["variables"], "requests.variables", "name", "value")
    if item.get("waitTimeMs") is not None:
        step["wait_ms"] = item["waitTimeMs"]
    return step


# -- responses ------------------------------------------------------------------------------------


def unexpanded_test(base: str, test: SyntheticTest) -> dict[str, Any]:
    body = bodies.unexpanded_test(base, test)
    if test.type in KINDS:
        settings = body.pop(SETTINGS_KEY[test.type], None) or {}
        body.update(_dns_body(test, settings) if test.type == "dns-server" else _api_body(settings))
        if test.type == "dns-server":
            body.pop("url", None)
    return body


def full_test(base: str, test: SyntheticTest, known: Mapping[int, Agent]) -> dict[str, Any]:
    body = unexpanded_test(base, test)
    body["agents"] = bodies.full_test(base, test, known)["agents"]
    return body


def _dns_body(test: SyntheticTest, settings: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "domain": test.url,
        "dnsServers": [
            {"serverId": str(number), "serverName": name}
            for number, name in enumerate(settings.get("servers") or [], 1)
        ],
        "dnsTransportProtocol": settings.get("protocol", "udp"),
        "recursiveQueries": settings.get("recursion", True),
        "dnsQueryClass": "in",
    }


def _api_body(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "requests": [_request_body(step) for step in settings.get("steps") or []],
        "predefinedVariables": [
            {"name": name, "value": value} for name, value in settings.get("variables") or []
        ],
        "timeLimit": settings.get("time_limit", 30),
        "followRedirects": settings.get("follow_redirects", True),
    }


def _request_body(step: Mapping[str, Any]) -> dict[str, Any]:
    body = {
        "name": step["name"],
        "url": step["url"],
        "method": step["method"],
        "headers": [{"key": k, "value": v} for k, v in step.get("headers") or []],
        "assertions": [dict(a) for a in step.get("assertions") or []],
        "variables": [{"name": n, "value": v} for n, v in step.get("variables") or []],
        "verifyCertificate": step.get("verify_certificate", False),
        "waitTimeMs": step.get("wait_ms", 0),
        "authType": "none",
        "collectApiResponse": True,
    }
    if step.get("body") is not None:
        body["body"] = step["body"]
    return {k: v for k, v in body.items() if k not in _NEVER_RETURNED}


def _round_head(
    base: str, test: SyntheticTest, probe: ProbeRound, agent: Agent | None
) -> dict[str, Any]:
    return {
        **bodies.round_head(test, probe, agent, (probe.result or {}).get("date")),
        "_links": {"appLink": {"href": f"{base}/v7/test-results/{test.id}/{test.type}"}},
    }


def result_bodies(
    base: str, test: SyntheticTest, probe: ProbeRound, agent: Agent | None
) -> list[dict[str, Any]]:
    """A round's results: one per DNS server asked, one for an API test's steps, or the round
    itself for the other types."""
    if test.type not in KINDS:
        return [bodies.result_body(base, test, probe, agent)]
    result = probe.result or {}
    head = _round_head(base, test, probe, agent)
    if test.type == "api":
        return [_api_result(head, result)]
    rows = []
    for number, answer in enumerate(result.get("servers") or [], 1):
        row = {**head, "serverId": str(number), "server": answer["server"]}
        if answer.get("resolution_time") is not None:
            row["resolutionTime"] = answer["resolution_time"]
        if answer.get("error_details"):
            row["errorDetails"] = answer["error_details"]
        data = [r["data"] for r in answer.get("answer") or [] if r.get("data")]
        if data:
            row["mappings"] = ", ".join(data)
        rows.append(row)
    return rows


def one_server(page: dict[str, Any], server_id: str) -> dict[str, Any]:
    """A page of a DNS server test's results, keeping one server's."""
    return {**page, "results": [r for r in page["results"] if r.get("serverId") == server_id]}


_API_FIELDS = {
    "api_transaction_time": "apiTransactionTime",
    "error_type": "errorType",
    "error_details": "errorDetails",
}


def _api_result(head: dict[str, Any], result: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **head,
        "completion": result.get("completion", 0.0),
        **bodies.present_fields(result, _API_FIELDS),
    }


_STEP_FIELDS = {
    "api_call_time": "apiCallTime",
    "send_time": "sendTime",
    "wait_time": "waitTime",
    "receive_time": "receiveTime",
    "response_time": "responseTime",
    "processing_time": "processingTime",
    "step_time": "stepTime",
}


def _step_detail(step: Mapping[str, Any]) -> dict[str, Any]:
    assertions = step.get("assertions") or []
    failed = step.get("error_type") is not None or any(a["has_failed"] for a in assertions)
    detail: dict[str, Any] = {
        "name": step["name"],
        "stepNumber": step["step_number"],
        "stepType": "default",
        "url": step["url"],
        "completion": 0 if failed else 100,
        "assertErrorCount": sum(a["has_failed"] for a in assertions),
        "assertions": [{"step": a["step"], "hasFailed": a["has_failed"]} for a in assertions],
    }
    return {**detail, **bodies.present_fields(step, _STEP_FIELDS)}


@router.get(
    "/test-results/{test_id}/api/agent/{agent_id}/round/{round_id}",
    summary="An API test's steps in one agent's round",
)
def api_round(
    test_id: str,
    agent_id: str,
    round_id: str,
    request: Request,
    services: ServicesDep,
    principal: Viewer,
    aid: str | None = None,
):
    numbers = []
    for value, most in ((test_id, 2**31 - 1), (agent_id, 2**31 - 1), (round_id, 2**53)):
        if not (value.isascii() and value.isdigit()) or int(value) > most:
            raise NotFound(f"no round {round_id} of agent {agent_id} in test {test_id}")
        numbers.append(int(value))
    test, rounds, _ = services.synthetic.results(
        scope(services, principal, aid),
        numbers[0],
        "api",
        start=numbers[2],
        end=numbers[2],
        limit=1000,
    )
    mine = [r for r in rounds if r.agent_id == numbers[1]]
    if not mine:
        raise NotFound(f"no round {round_id} of agent {agent_id} in test {test_id}")
    base = public_base(request, services)
    agents = {agent.id: agent for agent in services.agents.all()}
    results = []
    for probe in mine:
        row = _api_result(_round_head(base, test, probe, agents.get(probe.agent_id)), probe.result)
        row["requests"] = [_step_detail(step) for step in (probe.result or {}).get("steps") or []]
        results.append(row)
    return hal(
        {
            "results": results,
            "test": bodies.simple_test(base, test),
            "_links": {"self": {"href": str(request.url)}},
        }
    )
