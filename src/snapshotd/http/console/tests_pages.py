"""The console's synthetic test pages: the tests of the user's account groups, and one test with
its recent rounds and the snapshots frozen from it, with their share links."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from snapshotd.http.console import views
from snapshotd.http.console.params import cursor, known_id
from snapshotd.http.console.session import ConsoleRoute, ConsoleUser, render
from snapshotd.http.deps import ServicesDep, public_base
from snapshotd.services.console_reads import Round

router = APIRouter(route_class=ConsoleRoute)

ROUNDS = 50
TYPES = {
    "http-server": "HTTP server",
    "page-load": "Page load",
    "dns-server": "DNS server",
    "api": "API",
}
Text = Annotated[str, Query(max_length=20)]


def interval(seconds: int) -> str:
    return f"{seconds // 60} min" if seconds % 3600 else f"{seconds // 3600} h"


@router.get("/tests", include_in_schema=False)
def tests_page(request: Request, visit: ConsoleUser, services: ServicesDep) -> Response:
    items = services.console_reads.tests_of(visit.principal)
    context = {"nav": "tests", "rows": items, "types": TYPES, "interval": interval}
    return render(request, "console/tests.html", context, visit=visit)


def _result_row(found: Round) -> dict[str, Any]:
    result = found.result
    error = result.get("error_type")
    details = result.get("error_details")
    if found.state != "done":
        outcome = "Running" if found.state == "working" else "Queued"
    else:
        outcome = "Error" if error else "OK"
    code = result.get("response_code")
    return {
        "round": found.round_id,
        "time": views.when(_at(found.round_id)),
        "agent": found.agent,
        "outcome": outcome,
        "ok": outcome == "OK",
        "code": code if code is not None else "",
        "response": _ms(result.get("response_time")),
        "total": _ms(result.get("total_time") or result.get("page_load_time")),
        "error": f"{error}: {details}" if error and details else (error or ""),
    }


def _at(round_id: int) -> datetime:
    return datetime.fromtimestamp(round_id, UTC)


def _ms(value: object) -> str:
    return f"{float(value):,.0f}" if isinstance(value, int | float) else ""


@router.get("/tests/{test_id}", include_in_schema=False)
def test_page(
    test_id: str, request: Request, visit: ConsoleUser, services: ServicesDep, before: Text = ""
) -> Response:
    principal = visit.principal
    reads = services.console_reads
    test = reads.synthetic_test(principal, known_id(test_id, "test"))
    rounds = reads.rounds(test.id, before=cursor(before, "before"), limit=ROUNDS)
    older = None
    if len(rounds) == ROUNDS and rounds[0].round_id != rounds[-1].round_id:
        # The page may have cut the last round's agents short: that round starts the next page.
        last = rounds[-1].round_id
        rounds = [r for r in rounds if r.round_id != last]
        older = last + 1
    base = public_base(request, services)
    snapshots = [
        {
            "card": views.card(snapshot, None),
            "shares": views.share_rows(base, shares),
        }
        for snapshot, shares in reads.window_snapshots(principal.org_id, test.id)
    ]
    names = {agent.id: agent.name for agent in services.agents.all()}
    context = {
        "nav": "tests",
        "test": test,
        "type": TYPES.get(test.type, test.type),
        "interval": interval(test.interval),
        "agents": [names.get(a, f"agent {a}") for a in test.agent_ids or []],
        "rounds": [_result_row(r) for r in rounds],
        "older": older,
        "paged": bool(before),
        "snapshots": snapshots,
        "when": views.when,
    }
    return render(request, "console/test.html", context, visit=visit)
