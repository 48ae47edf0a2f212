"""The console's location pages: the list, one location (its settings, schedule and capture
history) and the comparison of two of its captures, side by side or overlaid, with the changed
pixels highlighted.

Settings are saved through `Locations.update`, the function behind `PATCH /v1.1/locations/{id}`,
so the console and the API accept and refuse the same values.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse

from snapshotd.errors import BadRequest, SnapshotdError
from snapshotd.http.console import views
from snapshotd.http.console.params import page_number
from snapshotd.http.console.session import (
    PAGE_HEADERS,
    ConsoleRoute,
    ConsoleUser,
    ManagerForm,
    Visit,
    form_text,
    render,
)
from snapshotd.http.deps import Services, ServicesDep
from snapshotd.services.locations import FREQUENCIES, PLATFORMS, LocationFields
from snapshotd.services.records import Location, Snapshot

router = APIRouter(route_class=ConsoleRoute)

PER_PAGE = 25
Id = Annotated[str, Query(max_length=40)]
Mode = Literal["side", "overlay"]
FIELDS = ("name", "description", "capture_url", "platform", "frequency", "change_threshold")
DONE = {
    "saved": "The location's settings are saved.",
    "published": "The location is published: it is captured on its schedule.",
}
SOURCES = {
    "automated": "Scheduled",
    "triggered": "Triggered",
    "customer_provided": "Uploaded",
}


@router.get("/locations", include_in_schema=False)
def locations_page(
    request: Request, visit: ConsoleUser, services: ServicesDep, page: Id = ""
) -> Response:
    number = page_number(page)
    items, total = services.locations.find(visit.principal.org_id, page=number, per_page=PER_PAGE)
    context = {
        "nav": "locations",
        "rows": items,
        "total": total,
        "page": number,
        "older": number * PER_PAGE < total,
        "when": views.when,
    }
    return render(request, "console/locations.html", context, visit=visit)


def _history(
    services: Services, location: Location, before: str
) -> tuple[list[dict[str, Any]], str | None]:
    found = services.console_reads.timeline(
        location.org_id, location.id, before=before, limit=PER_PAGE
    )
    rows = []
    for snapshot in found.items:
        change = (snapshot.meta or {}).get("change") or {}
        previous = found.previous.get(snapshot.id)
        rows.append(
            {
                "card": views.card(snapshot, None),
                "source": SOURCES.get(snapshot.source or "", snapshot.source or "Triggered"),
                "change": change.get("changed_percent"),
                "changed": bool(change.get("changed")),
                "compare": (
                    f"/console/locations/{location.id}/compare?a={previous}&b={snapshot.id}"
                    if previous
                    else None
                ),
            }
        )
    return rows, found.older


def _detail(
    request: Request,
    visit: Visit,
    services: Services,
    location: Location,
    *,
    before: str = "",
    values: dict[str, str] | None = None,
    error: SnapshotdError | None = None,
    notice: str = "",
) -> Response:
    history, older = _history(services, location, before)
    context = {
        "nav": "locations",
        "location": location,
        "values": values or _values(location),
        "frequencies": FREQUENCIES,
        "platforms": PLATFORMS,
        "history": history,
        "older": older,
        "paged": bool(before),
        "error": error.detail if error else "",
        "error_field": (error.field or "").split(".")[0] if error else "",
        "notice": notice,
        "when": views.when,
    }
    status = error.status if error else 200
    return render(request, "console/location.html", context, visit=visit, status_code=status)


def _values(location: Location) -> dict[str, str]:
    values = {name: str(getattr(location, name) or "") for name in FIELDS}
    values["change_threshold"] = f"{location.change_threshold:g}"
    values["webhook_url"] = location.webhook_url or ""
    return values


@router.get("/locations/{location_id}", include_in_schema=False)
def location_page(
    location_id: str,
    request: Request,
    visit: ConsoleUser,
    services: ServicesDep,
    before: Id = "",
    done: Id = "",
) -> Response:
    location = services.locations.get(visit.principal.org_id, location_id)
    return _detail(request, visit, services, location, before=before, notice=DONE.get(done, ""))


def fields_from(form: dict[str, str], location: Location) -> LocationFields:
    """The update a filled-in settings form asks for. Web-only settings are ignored for a
    mobile app location; an empty threshold keeps the current one."""
    fields = LocationFields(
        name=form.get("name", "").strip(),
        description=form.get("description", "").strip(),
        frequency=form.get("frequency", "").strip() or None,
    )
    if location.location_type == "web":
        fields.capture_url = form.get("capture_url", "").strip()
        fields.platform = form.get("platform", "").strip() or None
        fields.webhook_url = form.get("webhook_url", "").strip()
        threshold = form.get("change_threshold", "").strip()
        if threshold:
            try:
                fields.change_threshold = float(threshold)
            except ValueError:
                raise BadRequest(
                    "must be a percentage from 0 to 100", field="change_threshold"
                ) from None
    if not fields.name:
        raise BadRequest("name is required", field="name")
    return fields


@router.post("/locations/{location_id}", include_in_schema=False)
async def save_location(
    location_id: str, request: Request, visit: ManagerForm, services: ServicesDep
) -> Response:
    principal = visit.principal
    location = await asyncio.to_thread(services.locations.get, principal.org_id, location_id)
    form = await form_text(request)
    values = {key: form.get(key, "") for key in (*FIELDS, "webhook_url")}
    try:
        fields = fields_from(form, location)
        await asyncio.to_thread(
            services.locations.update,
            principal.org_id,
            location_id,
            fields,
            actor=principal.email,
        )
    except SnapshotdError as error:
        return await asyncio.to_thread(
            _detail, request, visit, services, location, values=values, error=error
        )
    return RedirectResponse(f"/console/locations/{location_id}?done=saved", status_code=303)


@router.post("/locations/{location_id}/publish", include_in_schema=False)
def publish_location(location_id: str, visit: ManagerForm, services: ServicesDep) -> Response:
    principal = visit.principal
    services.locations.publish(principal.org_id, location_id, actor=principal.email)
    return RedirectResponse(f"/console/locations/{location_id}?done=published", status_code=303)


def _pair(choices: list[tuple[str, str]], a: str, b: str) -> tuple[str, str]:
    """The two snapshots asked for; by default the latest capture and the one before it."""
    if a and b:
        return a, b
    if len(choices) < 2:
        raise BadRequest("this location needs two captures with an image to compare")
    return a or choices[1][0], b or choices[0][0]


def _option(snapshot: Snapshot) -> tuple[str, str]:
    """A capture as the pickers name it: to the second, since captures can share a minute."""
    moment = snapshot.created_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    return snapshot.id, f"{moment} · {SOURCES.get(snapshot.source or '', 'Triggered')}"


@router.get("/locations/{location_id}/compare", include_in_schema=False)
def compare_page(
    location_id: str,
    request: Request,
    visit: ConsoleUser,
    services: ServicesDep,
    a: Id = "",
    b: Id = "",
    mode: Mode = "side",
) -> Response:
    org_id = visit.principal.org_id
    location = services.locations.get(org_id, location_id)
    choices = [_option(s) for s in services.console_reads.comparable(org_id, location_id)]
    context: dict[str, Any] = {
        "nav": "locations",
        "location": location,
        "choices": choices,
        "mode": mode,
        "a": a,
        "b": b,
        "error": "",
        "result": None,
    }
    if not (a and b) and len(choices) < 2:
        return render(request, "console/location_compare.html", context, visit=visit)
    try:
        a, b = _pair(choices, a, b)
        context |= {"a": a, "b": b}
        found = services.comparisons.compare(org_id, location_id, a, b)
    except BadRequest as problem:
        context["error"] = problem.detail
        return render(
            request, "console/location_compare.html", context, visit=visit, status_code=400
        )
    context["result"] = {
        "before": views.card(found.before, None),
        "after": views.card(found.after, None),
        "percent": f"{found.changed_percent:g}",
        "pixels": found.changed_pixels,
        "recorded": found.recorded,
        "diff": f"/console/locations/{location_id}/compare/diff?{urlencode({'a': a, 'b': b})}",
        "threshold": location.change_threshold,
        "changed": found.changed_percent > location.change_threshold,
    }
    return render(request, "console/location_compare.html", context, visit=visit)


@router.get("/locations/{location_id}/compare/diff", include_in_schema=False)
def compare_image(
    location_id: str, visit: ConsoleUser, services: ServicesDep, a: Id = "", b: Id = ""
) -> Response:
    org_id = visit.principal.org_id
    found = services.comparisons.compare(org_id, location_id, a, b)
    headers = {**PAGE_HEADERS, "Cache-Control": "private, max-age=300"}
    return Response(found.image, media_type="image/png", headers=headers)
