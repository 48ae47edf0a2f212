"""The console's chart pages: the organization's spaces, and one space with each chart drawn live
from stored series over a chosen window, and the chart snapshots taken of it.

A live chart is read and drawn exactly as a chart snapshot's job does it (`ChartSnapshots.spec`
and the chart engine), so what the console shows is what a snapshot of it would freeze.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from snapshotd.errors import BadRequest
from snapshotd.http.console import views
from snapshotd.http.console.params import known_id, page_number
from snapshotd.http.console.session import ConsoleRoute, ConsoleUser, render
from snapshotd.http.deps import ServicesDep

router = APIRouter(route_class=ConsoleRoute)

PER_PAGE = 50
WINDOWS = {"1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400}
WINDOW_LABELS = {
    "1h": "Last hour",
    "6h": "Last 6 hours",
    "24h": "Last 24 hours",
    "7d": "Last 7 days",
}
Text = Annotated[str, Query(max_length=100)]
Width = Annotated[int | None, Query(ge=200, le=2000)]
Height = Annotated[int | None, Query(ge=150, le=1200)]


def _window(value: str) -> str:
    if not value:
        return "1h"
    if value not in WINDOWS:
        raise BadRequest(f"window must be one of {', '.join(WINDOWS)}", field="window")
    return value


@router.get("/spaces", include_in_schema=False)
def spaces_page(
    request: Request, visit: ConsoleUser, services: ServicesDep, q: Text = "", page: Text = ""
) -> Response:
    number = page_number(page)
    items, found, total = services.spaces.find(
        visit.principal.org_id, name=q.strip(), offset=(number - 1) * PER_PAGE, length=PER_PAGE
    )
    context = {
        "nav": "charts",
        "rows": items,
        "found": found,
        "total": total,
        "q": q.strip(),
        "page": number,
        "older": number * PER_PAGE < found,
    }
    return render(request, "console/spaces.html", context, visit=visit)


@router.get("/spaces/{space_id}", include_in_schema=False)
def space_page(
    space_id: str, request: Request, visit: ConsoleUser, services: ServicesDep, window: Text = ""
) -> Response:
    org_id = visit.principal.org_id
    number = known_id(space_id, "space")
    space, _ids = services.spaces.get(org_id, number)
    error, chosen = "", "1h"
    try:
        chosen = _window(window)
    except BadRequest as problem:
        error = problem.detail
    charts = services.spaces.charts(org_id, number)
    history = services.console_reads.chart_snapshots(org_id, number)
    context = {
        "nav": "charts",
        "space": space,
        "charts": charts,
        "window": chosen,
        "windows": WINDOW_LABELS,
        "width": services.settings.chart_width,
        "height": services.settings.chart_height,
        "cards": [views.card(s, None) for s in history],
        "error": error,
    }
    status = 400 if error else 200
    return render(request, "console/space.html", context, visit=visit, status_code=status)


@router.get("/spaces/{space_id}/charts/{chart_id}/image", include_in_schema=False)
async def chart_image(
    space_id: str,
    chart_id: str,
    visit: ConsoleUser,
    services: ServicesDep,
    window: Text = "",
    width: Width = None,
    height: Height = None,
) -> Response:
    seconds = WINDOWS[_window(window)]
    png = await asyncio.to_thread(
        services.console_reads.render_chart,
        visit.principal.org_id,
        known_id(space_id, "space"),
        known_id(chart_id, "chart"),
        seconds=min(seconds, services.settings.chart_max_duration_seconds),
        width=width or services.settings.chart_width,
        height=height or services.settings.chart_height,
    )
    headers = {"Cache-Control": "private, max-age=30", "X-Content-Type-Options": "nosniff"}
    return Response(png, media_type="image/png", headers=headers)
