"""ThousandEyes API v7 (`/v7`): agents, http-server and page-load tests, their results, and test
snapshots, as the official `thousandeyes-sdk-*` 6.0.0 clients call them.

Choices (docs/thousandeyes.md): `Authorization: Bearer` as v7 documents; `aid` selects the account
group (400 naming `aid` when the user is not in it); success bodies are `application/hal+json` with
HAL `_links`; creates answer 201, updates 200, deletes 204, exactly as the SDK expects. Results
default to the latest round; a window (`window`, or `startDate`/`endDate`) pages through
`_links.next` with an opaque cursor.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request, Response

from snapshotd.errors import BadRequest, NotFound
from snapshotd.http import openapi
from snapshotd.http.deps import Services, ServicesDep, credentials, public_base
from snapshotd.http.dialects.thousandeyes import bodies, dns_api
from snapshotd.http.dialects.thousandeyes.common import HalJSON, hal, parse_window, scope
from snapshotd.http.wire import json_object, parse_date, principal_factory
from snapshotd.services.accounts import Principal
from snapshotd.services.network_tests import NETWORK_TYPES
from snapshotd.services.records import ProbeRound, SyntheticTest
from snapshotd.services.synthetic import TYPES
from snapshotd.timestamps import iso_seconds

router = APIRouter(prefix="/v7", tags=["thousandeyes v7"], default_response_class=HalJSON)

RESULTS_PAGE = 500
Aid = Annotated[str | None, Query()]


requires = principal_factory(lambda request: credentials(request, basic=False))
Viewer = Annotated[Principal, Depends(requires("view"))]
Uploader = Annotated[Principal, Depends(requires("upload"))]
Sharer = Annotated[Principal, Depends(requires("share"))]


def _kind(test_type: str) -> str:
    if test_type not in TYPES:
        *some, last = (*TYPES, *NETWORK_TYPES)
        raise NotFound(f"snapshotd runs {', '.join(some)} and {last} tests, not {test_type}")
    return test_type


def _test_id(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or int(value) > 2**31 - 1:
        raise NotFound(f"no test {value}")
    return int(value)


def _agents_by_id(services: Services) -> dict[int, Any]:
    return {agent.id: agent for agent in services.agents.all()}


# -- agents ---------------------------------------------------------------------------------------


@router.get("/agents", summary="The agents (worker hosts) that run tests")
def list_agents(request: Request, services: ServicesDep, principal: Viewer, aid: Aid = None):
    scope(services, principal, aid)
    base = public_base(request, services)
    body = {
        "agents": [bodies.agent_body(a) for a in services.agents.all()],
        "_links": {"self": {"href": f"{base}/v7/agents"}},
    }
    return hal(body)


# -- tests ----------------------------------------------------------------------------------------


@router.get("/tests", summary="All tests of the account group")
def list_tests(request: Request, services: ServicesDep, principal: Viewer, aid: Aid = None):
    tests = services.synthetic.find(scope(services, principal, aid))
    base = public_base(request, services)
    return hal(
        {
            "tests": [bodies.simple_test(base, t) for t in tests],
            "_links": {"self": {"href": f"{base}/v7/tests"}},
        }
    )


@router.get("/tests/{test_type}", summary="Tests of one type")
def list_typed(
    test_type: str, request: Request, services: ServicesDep, principal: Viewer, aid: Aid = None
):
    tests = services.synthetic.find(scope(services, principal, aid), _kind(test_type))
    base = public_base(request, services)
    return hal(
        {
            "tests": [dns_api.unexpanded_test(base, t) for t in tests],
            "_links": {"self": {"href": f"{base}/v7/tests/{test_type}"}},
        }
    )


@router.post(
    "/tests/{test_type}", summary="Create a test", status_code=201, openapi_extra=openapi.JSON_BODY
)
async def create_test(
    test_type: str, request: Request, services: ServicesDep, principal: Uploader, aid: Aid = None
):
    kind = _kind(test_type)
    fields = dns_api.test_fields(kind, await json_object(request), creating=True)
    where = await asyncio.to_thread(scope, services, principal, aid)
    test = await asyncio.to_thread(
        services.synthetic.create, where, kind, fields, actor=principal.email
    )
    known = await asyncio.to_thread(_agents_by_id, services)
    body = dns_api.full_test(public_base(request, services), test, known)
    response = hal(body, status=201)
    response.headers["Location"] = body["_links"]["self"]["href"]
    return response


@router.get("/tests/{test_type}/{test_id}", summary="A test")
def get_test(
    test_type: str,
    test_id: str,
    request: Request,
    services: ServicesDep,
    principal: Viewer,
    aid: Aid = None,
):
    test = services.synthetic.get(
        scope(services, principal, aid), _test_id(test_id), _kind(test_type)
    )
    return hal(dns_api.full_test(public_base(request, services), test, _agents_by_id(services)))


@router.put(
    "/tests/{test_type}/{test_id}", summary="Update a test", openapi_extra=openapi.JSON_BODY
)
async def update_test(
    test_type: str,
    test_id: str,
    request: Request,
    services: ServicesDep,
    principal: Uploader,
    aid: Aid = None,
):
    kind, number = _kind(test_type), _test_id(test_id)
    fields = dns_api.test_fields(kind, await json_object(request), creating=False)
    where = await asyncio.to_thread(scope, services, principal, aid)
    test = await asyncio.to_thread(
        services.synthetic.update, where, number, kind, fields, actor=principal.email
    )
    known = await asyncio.to_thread(_agents_by_id, services)
    return hal(dns_api.full_test(public_base(request, services), test, known))


@router.delete("/tests/{test_type}/{test_id}", status_code=204, summary="Delete a test")
def delete_test(
    test_type: str, test_id: str, services: ServicesDep, principal: Uploader, aid: Aid = None
) -> Response:
    services.synthetic.delete(
        scope(services, principal, aid),
        _test_id(test_id),
        _kind(test_type),
        actor=principal.email,
    )
    return Response(status_code=204)


# -- results --------------------------------------------------------------------------------------


def _window(
    window: str | None, start_date: str | None, end_date: str | None
) -> tuple[int | None, int]:
    now = datetime.now(UTC)
    if window is not None and (start_date is not None or end_date is not None):
        raise BadRequest("window cannot be combined with startDate or endDate", field="window")
    end = parse_date(end_date, "endDate") if end_date is not None else now
    if window is not None:
        return int((now - parse_window(window)).timestamp()), int(now.timestamp())
    if start_date is not None:
        start = parse_date(start_date, "startDate")
        if start > end:
            raise BadRequest("must not be after endDate", field="startDate")
        return int(start.timestamp()), int(end.timestamp())
    return None, int(end.timestamp())


def _cursor(value: str | None) -> int:
    if not value:
        return 0
    try:
        after = json.loads(base64.urlsafe_b64decode(value.encode()))["after"]
        if not isinstance(after, int) or isinstance(after, bool) or not 0 <= after < 2**31:
            raise ValueError
        return after
    except (ValueError, KeyError, TypeError, RecursionError):
        raise BadRequest("cursor is not one this API handed out", field="cursor") from None


def page_links(
    request: Request, base: str, rounds: Sequence[ProbeRound], more: bool
) -> dict[str, Any]:
    """A results page's `_links`: itself, and the next page's cursor after its last round."""
    links: dict[str, Any] = {"self": {"href": str(request.url)}}
    if more and rounds:
        token = base64.urlsafe_b64encode(json.dumps({"after": rounds[-1].id}).encode()).decode()
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
        query.append(("cursor", token))
        links["next"] = {"href": f"{base}{request.url.path}?{urlencode(query)}"}
    return links


def results_page(
    request: Request,
    base: str,
    test: SyntheticTest,
    rounds: Sequence[ProbeRound],
    more: bool,
    span: tuple[int | None, int],
) -> dict[str, Any]:
    """The body of a results page around its results: the test, the page's links, and the
    window when one was asked for."""
    body: dict[str, Any] = {
        "test": bodies.simple_test(base, test),
        "_links": page_links(request, base, rounds, more),
    }
    start, end = span
    if start is not None:
        body["startDate"] = iso_seconds(datetime.fromtimestamp(start, UTC))
        body["endDate"] = iso_seconds(datetime.fromtimestamp(end, UTC))
    return body


@router.get("/test-results/{test_id}/{test_type}", summary="Results of a test's rounds")
def test_results(
    test_id: str,
    test_type: str,
    request: Request,
    services: ServicesDep,
    principal: Viewer,
    aid: Aid = None,
    window: str | None = None,
    start_date: Annotated[str | None, Query(alias="startDate")] = None,
    end_date: Annotated[str | None, Query(alias="endDate")] = None,
    cursor: str | None = None,
):
    start, end = _window(window, start_date, end_date)
    test, rounds, more = services.synthetic.results(
        scope(services, principal, aid),
        _test_id(test_id),
        _kind(test_type),
        start=start,
        end=end,
        after=_cursor(cursor),
        limit=RESULTS_PAGE,
    )
    base = public_base(request, services)
    known = _agents_by_id(services)
    results = [
        body for r in rounds for body in dns_api.result_bodies(base, test, r, known.get(r.agent_id))
    ]
    return hal(
        {"results": results, **results_page(request, base, test, rounds, more, (start, end))}
    )


@router.get(
    "/test-results/{test_id}/dns-server/{server_id}",
    summary="Results of one DNS server of a dns-server test",
)
def dns_server_results(
    test_id: str,
    server_id: str,
    request: Request,
    services: ServicesDep,
    principal: Viewer,
    aid: Aid = None,
    window: str | None = None,
    start_date: Annotated[str | None, Query(alias="startDate")] = None,
    end_date: Annotated[str | None, Query(alias="endDate")] = None,
    cursor: str | None = None,
):
    page = test_results(
        test_id,
        "dns-server",
        request,
        services,
        principal,
        aid,
        window,
        start_date,
        end_date,
        cursor,
    )
    return hal(dns_api.one_server(json.loads(page.body), server_id))


# -- snapshots ------------------------------------------------------------------------------------


@router.post(
    "/tests/{test_id}/snapshot",
    status_code=201,
    summary="Freeze a test's rounds in a window and share them",
    openapi_extra=openapi.JSON_BODY,
)
async def create_snapshot(
    test_id: str, request: Request, services: ServicesDep, principal: Sharer, aid: Aid = None
):
    body = await json_object(request)
    dates = []
    for field in ("startDate", "endDate"):
        value = body.get(field)
        if not isinstance(value, str):
            raise BadRequest("is required: an ISO 8601 date-time", field=field)
        dates.append(parse_date(value, field))
    public = body.get("isPublic", False)
    if not isinstance(public, bool):
        raise BadRequest("must be true or false", field="isPublic")
    where = await asyncio.to_thread(scope, services, principal, aid)
    frozen = await asyncio.to_thread(
        services.test_windows.create,
        principal,
        where,
        _test_id(test_id),
        display_name=body.get("displayName"),
        start=dates[0],
        end=dates[1],
        public=public,
        surface="thousandeyes_v7",
    )
    base = public_base(request, services)
    view_url = f"{base}/s/{frozen.share.id}"
    return hal(bodies.snapshot_v7(base, frozen, view_url, principal.user_id), status=201)
