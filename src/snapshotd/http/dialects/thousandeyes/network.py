"""ThousandEyes v7 network routes: agent-to-server tests (`/v7/tests/agent-to-server`), the
network results of those and of http-server tests (`/v7/test-results/{id}/network`), and their
path visualization (`/v7/test-results/{id}/path-vis`, and one agent's round in detail), in the
shapes the official `thousandeyes-sdk-tests` / `-test-results` 6.0.0 read.

An agent-to-server test's `server` and `port` are one target, `host:port` (TCP port 80 unless
either names another); its `protocol` is `tcp` or `icmp`. Path visualization answers 400 when the
window has measured rounds but none could trace a path, with the reason the worker recorded.
These routes are matched before v7's generic test and result routes (see `__init__.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from snapshotd.errors import BadRequest, NotFound
from snapshotd.http import openapi
from snapshotd.http.deps import Services, ServicesDep, public_base
from snapshotd.http.dialects.thousandeyes import bodies
from snapshotd.http.dialects.thousandeyes.bodies import present_fields
from snapshotd.http.dialects.thousandeyes.common import HalJSON, hal, scope
from snapshotd.http.dialects.thousandeyes.v7 import (
    RESULTS_PAGE,
    Aid,
    Uploader,
    Viewer,
    _agents_by_id,
    _cursor,
    _test_id,
    _window,
    results_page,
)
from snapshotd.http.wire import json_object
from snapshotd.services import network_tests
from snapshotd.services.records import Agent, ProbeRound, SyntheticTest
from snapshotd.services.synthetic import Scope, TestFields

router = APIRouter(prefix="/v7", tags=["thousandeyes v7"], default_response_class=HalJSON)

KIND = "agent-to-server"
PROTOCOLS = ("tcp", "icmp")
StartDate = Annotated[str | None, Query(alias="startDate")]
EndDate = Annotated[str | None, Query(alias="endDate")]


# -- tests ----------------------------------------------------------------------------------------


def _fields(body: Mapping[str, Any], *, creating: bool, current: str | None = None) -> TestFields:
    fields = bodies.test_fields({k: v for k, v in body.items() if k != "url"}, creating=creating)
    server, port = body.get("server"), body.get("port")
    if server is not None and not isinstance(server, str):
        raise BadRequest("server: must be a string", field="server")
    if port is not None and (
        isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536
    ):
        raise BadRequest("port: must be a whole number from 1 to 65535", field="port")
    if server is not None:
        fields.url = network_tests.target(server, port)
    elif creating:
        raise BadRequest("server: is required: a host name or address, with :port", field="server")
    elif port is not None and current is not None:
        fields.url = network_tests.target(network_tests.host_port(current)[0], port)
    if fields.probe.protocol not in PROTOCOLS:
        raise BadRequest("protocol: agent-to-server tests probe with tcp or icmp", field="protocol")
    return fields


def _links(base: str, test: SyntheticTest) -> dict[str, Any]:
    results = f"{base}/v7/test-results/{test.id}"
    return {
        "self": {"href": f"{base}/v7/tests/{KIND}/{test.id}"},
        "testResults": [{"href": f"{results}/network"}, {"href": f"{results}/path-vis"}],
    }


def test_body(
    base: str, test: SyntheticTest, known: Mapping[int, Agent] | None = None
) -> dict[str, Any]:
    body = (
        bodies.unexpanded_test(base, test) if known is None else bodies.full_test(base, test, known)
    )
    body.pop("url", None)
    body["server"] = test.url
    body["port"] = network_tests.host_port(test.url)[1]
    body.setdefault("protocol", "tcp")
    body["_links"] = _links(base, test)
    return body


@router.get(f"/tests/{KIND}", summary="Agent-to-server tests")
def list_tests(request: Request, services: ServicesDep, principal: Viewer, aid: Aid = None):
    tests = services.synthetic.find(scope(services, principal, aid), KIND)
    base = public_base(request, services)
    return hal(
        {
            "tests": [test_body(base, t) for t in tests],
            "_links": {"self": {"href": f"{base}/v7/tests/{KIND}"}},
        }
    )


@router.post(
    f"/tests/{KIND}",
    summary="Create an agent-to-server test",
    status_code=201,
    openapi_extra=openapi.JSON_BODY,
)
async def create_test(
    request: Request, services: ServicesDep, principal: Uploader, aid: Aid = None
):
    fields = _fields(await json_object(request), creating=True)
    where = await asyncio.to_thread(scope, services, principal, aid)
    test = await asyncio.to_thread(
        services.synthetic.create, where, KIND, fields, actor=principal.email
    )
    known = await asyncio.to_thread(_agents_by_id, services)
    body = test_body(public_base(request, services), test, known)
    response = hal(body, status=201)
    response.headers["Location"] = body["_links"]["self"]["href"]
    return response


@router.get(f"/tests/{KIND}/{{test_id}}", summary="An agent-to-server test")
def get_test(
    test_id: str, request: Request, services: ServicesDep, principal: Viewer, aid: Aid = None
):
    test = services.synthetic.get(scope(services, principal, aid), _test_id(test_id), KIND)
    return hal(test_body(public_base(request, services), test, _agents_by_id(services)))


@router.put(
    f"/tests/{KIND}/{{test_id}}",
    summary="Update an agent-to-server test",
    openapi_extra=openapi.JSON_BODY,
)
async def update_test(
    test_id: str, request: Request, services: ServicesDep, principal: Uploader, aid: Aid = None
):
    number = _test_id(test_id)
    body = await json_object(request)
    where = await asyncio.to_thread(scope, services, principal, aid)
    current = await asyncio.to_thread(services.synthetic.get, where, number, KIND)
    fields = _fields(body, creating=False, current=current.url)
    test = await asyncio.to_thread(
        services.synthetic.update, where, number, KIND, fields, actor=principal.email
    )
    known = await asyncio.to_thread(_agents_by_id, services)
    return hal(test_body(public_base(request, services), test, known))


@router.delete(
    f"/tests/{KIND}/{{test_id}}", status_code=204, summary="Delete an agent-to-server test"
)
def delete_test(
    test_id: str, services: ServicesDep, principal: Uploader, aid: Aid = None
) -> Response:
    where = scope(services, principal, aid)
    services.synthetic.delete(where, _test_id(test_id), KIND, actor=principal.email)
    return Response(status_code=204)


# -- results --------------------------------------------------------------------------------------


def _measured(services: Services, where: Scope, test_id: str) -> SyntheticTest:
    test = services.synthetic.get(where, _test_id(test_id))
    if test.type not in network_tests.MEASURED_TYPES:
        raise NotFound(f"test {test.id} is a {test.type} test, which measures no network")
    return test


def _round_base(
    base: str, test: SyntheticTest, probe: ProbeRound, agent: Agent | None, measured: Any
) -> dict[str, Any]:
    return {
        **bodies.round_head(test, probe, agent, measured.get("date")),
        "server": measured.get("server") or test.url,
        "direction": "to-target",
        "_links": {"appLink": {"href": f"{base}/v7/test-results/{test.id}/network"}},
    }


_METRICS = {
    "server_ip": "serverIp",
    "loss": "loss",
    "min_latency": "minLatency",
    "avg_latency": "avgLatency",
    "max_latency": "maxLatency",
    "jitter": "jitter",
    "error_details": "errorDetails",
}


def network_body(
    base: str, test: SyntheticTest, probe: ProbeRound, agent: Agent | None, measured: Any
) -> dict[str, Any]:
    return {**_round_base(base, test, probe, agent, measured), **present_fields(measured, _METRICS)}


def _path_base(
    base: str, test: SyntheticTest, probe: ProbeRound, agent: Agent | None, measured: Any
) -> dict[str, Any]:
    body = _round_base(base, test, probe, agent, measured)
    body.update(present_fields(measured, {"server_ip": "serverIp", "source_ip": "sourceIp"}))
    detail = f"{base}/v7/test-results/{test.id}/path-vis/agent/{probe.agent_id}/round/"
    body["_links"] = {"appLink": {"href": f"{detail}{probe.round_id}"}}
    body["targetIsProxy"] = False
    return body


def path_body(
    base: str, test: SyntheticTest, probe: ProbeRound, agent: Agent | None, measured: Any
) -> dict[str, Any]:
    body = _path_base(base, test, probe, agent, measured)
    hops = measured["path"]
    trace: dict[str, Any] = {"pathId": "1", "numberOfHops": len(hops)}
    if hops and hops[-1].get("ip"):
        trace["ipAddress"] = hops[-1]["ip"]
    if hops and hops[-1].get("response_time") is not None:
        trace["responseTime"] = hops[-1]["response_time"]
    body["pathTraces"] = [trace]
    return body


def _hop(hop: Mapping[str, Any]) -> dict[str, Any]:
    names = {"ip": "ipAddress", "rdns": "rdns", "response_time": "responseTime"}
    return {"hop": hop["hop"], **present_fields(hop, names)}


def path_detail_body(
    base: str, test: SyntheticTest, probe: ProbeRound, agent: Agent | None, measured: Any
) -> dict[str, Any]:
    body = _path_base(base, test, probe, agent, measured)
    body["pathTraces"] = [{"pathId": "1", "hops": [_hop(hop) for hop in measured["path"]]}]
    return body


def _page(
    request: Request,
    services: Services,
    where: Scope,
    test: SyntheticTest,
    span: tuple[int | None, int],
    cursor: str | None,
) -> tuple[list[tuple[ProbeRound, Mapping[str, Any]]], dict[str, Any]]:
    """One page of the test's measured rounds in the window, and the page's body around them."""
    start, end = span
    _, rounds, more = services.synthetic.results(
        where, test.id, test.type, start=start, end=end, after=_cursor(cursor), limit=RESULTS_PAGE
    )
    body = results_page(request, public_base(request, services), test, rounds, more, span)
    measured = [(r, m) for r in rounds if (m := network_tests.network_of(test.type, r.result))]
    return measured, body


RoundBody = Callable[[str, SyntheticTest, ProbeRound, Agent | None, Any], dict[str, Any]]


def _results(
    request: Request,
    services: Services,
    where: Scope,
    test_id: str,
    span: tuple[int | None, int],
    cursor: str | None,
    round_body: RoundBody,
    *,
    traced: bool = False,
) -> Response:
    """A page of a test's measured rounds, each as `round_body` writes it; with `traced`, only
    the rounds that traced a path."""
    test = _measured(services, where, test_id)
    rounds, body = _page(request, services, where, test, span, cursor)
    base, known = public_base(request, services), _agents_by_id(services)
    chosen = _traced(rounds) if traced else rounds
    body["results"] = [round_body(base, test, r, known.get(r.agent_id), m) for r, m in chosen]
    return hal(body)


@router.get(
    "/test-results/{test_id}/network", summary="Loss, latency and jitter of a test's rounds"
)
def network_results(
    test_id: str,
    request: Request,
    services: ServicesDep,
    principal: Viewer,
    aid: Aid = None,
    window: str | None = None,
    start_date: StartDate = None,
    end_date: EndDate = None,
    cursor: str | None = None,
    direction: str | None = None,
):
    span = _window(window, start_date, end_date)
    where = scope(services, principal, aid)
    return _results(request, services, where, test_id, span, cursor, network_body)


def _traced(
    rounds: list[tuple[ProbeRound, Mapping[str, Any]]],
) -> list[tuple[ProbeRound, Mapping[str, Any]]]:
    """The rounds that traced a path; 400 when rounds were measured but none could."""
    traced = [(r, m) for r, m in rounds if m.get("path")]
    if rounds and not traced:
        reasons = [m.get("path_error") or m.get("error_details") for _, m in rounds]
        reason = next((r for r in reasons if r), "no round recorded a path")
        raise BadRequest(f"no path could be traced in this window: {reason}", field="testId")
    return traced


@router.get("/test-results/{test_id}/path-vis", summary="The path of a test's rounds")
def path_vis(
    test_id: str,
    request: Request,
    services: ServicesDep,
    principal: Viewer,
    aid: Aid = None,
    window: str | None = None,
    start_date: StartDate = None,
    end_date: EndDate = None,
    cursor: str | None = None,
):
    span = _window(window, start_date, end_date)
    where = scope(services, principal, aid)
    return _results(request, services, where, test_id, span, cursor, path_body, traced=True)


@router.get(
    "/test-results/{test_id}/path-vis/agent/{agent_id}/round/{round_id}",
    summary="One agent's path in one round, hop by hop",
)
def path_vis_detail(
    test_id: str,
    agent_id: str,
    round_id: str,
    request: Request,
    services: ServicesDep,
    principal: Viewer,
    aid: Aid = None,
):
    where = scope(services, principal, aid)
    test = _measured(services, where, test_id)
    if not (round_id.isascii() and round_id.isdigit()) or int(round_id) >= 2**31:
        raise NotFound(f"no round {round_id}")
    moment = int(round_id)
    rounds, _ = _page(request, services, where, test, (moment, moment), None)
    mine = [(r, m) for r, m in rounds if str(r.agent_id) == agent_id]
    if not mine:
        raise NotFound(f"no round {round_id} of agent {agent_id} in test {test.id}")
    base, known = public_base(request, services), _agents_by_id(services)
    return hal(
        {
            "results": [
                path_detail_body(base, test, r, known.get(r.agent_id), m) for r, m in _traced(mine)
            ],
            "test": bodies.simple_test(base, test),
            "_links": {"self": {"href": str(request.url)}},
        }
    )
