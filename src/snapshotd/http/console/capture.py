"""The console's new-capture form: the same options and service as `POST /api/v1/snapshots`.

A rejected request (a bad URL, a refused destination, a full queue, a ceiling) is shown inline
next to the form as it was filled in; an accepted one goes to the snapshot's page, which follows
the capture live until its image is there.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from snapshotd.errors import EgressDenied, InvalidURL, SnapshotdError
from snapshotd.http.console.session import (
    ConsoleRoute,
    UploaderForm,
    UploaderUser,
    Visit,
    form_text,
    render,
)
from snapshotd.http.deps import ServicesDep
from snapshotd.services.capture_request import fields_from_text, parse_request
from snapshotd.services.snapshots import device_names

router = APIRouter(route_class=ConsoleRoute)

FIELDS = ("url", "width", "height", "device", "selector", "format", "wait_until", "delay_ms")
# The real-world page options: what the page is told, and what is done to it before the picture.
PAGE_FIELDS = ("consent", "media", "color_scheme", "timezone", "locale", "geolocation")
CHECKS = (
    ("full_page", "Full page (the whole scrollable height)"),
    ("block_ads", "Block ads (EasyList)"),
    ("block_trackers", "Block trackers (EasyPrivacy)"),
    ("freeze_animations", "Freeze animations and videos"),
    ("reduced_motion", "Ask for reduced motion"),
    ("forced_colors", "Forced colours (high contrast)"),
)
SCROLLS = (
    ("", "With full page only"),
    ("true", "Always"),
    ("false", "Never"),
)
CONSENTS = (
    ("", "Leave them"),
    ("reject", "Reject"),
    ("accept", "Accept"),
    ("hide", "Hide without answering"),
)
FORMATS = ("png", "jpeg", "webp", "pdf")
WAITS = (
    ("load", "Page loaded (load)"),
    ("domcontentloaded", "Document parsed (domcontentloaded)"),
    ("networkidle", "Network quiet (networkidle)"),
)
DEFAULTS = {"width": "1280", "height": "800", "format": "png", "wait_until": "load"}


def options_from(form: dict[str, str]) -> dict[str, Any]:
    """The capture options a filled-in form asks for; empty fields keep their defaults."""
    texts = (*FIELDS, *PAGE_FIELDS, "scroll_lazy", "fail_on_status")
    filled = [(key, form[key].strip()) for key in texts if form.get(key, "").strip()]
    checked = [(key, "1" if form.get(key) else "") for key, _label in CHECKS]
    return fields_from_text([*filled, *checked])


def _field_of(error: SnapshotdError | None) -> str:
    """The form field an error is about; a refused URL names none but is the URL's fault."""
    if error is None:
        return ""
    if error.field:
        return error.field.split(".")[0]
    return "url" if isinstance(error, (InvalidURL, EgressDenied)) else ""


async def _page(
    request: Request,
    visit: Visit,
    values: dict[str, str],
    *,
    error: SnapshotdError | None = None,
) -> Response:
    context = {
        "nav": "new",
        "values": values,
        "devices": await asyncio.to_thread(device_names),
        "formats": FORMATS,
        "waits": WAITS,
        "checks": CHECKS,
        "scrolls": SCROLLS,
        "consents": CONSENTS,
        "error": error.detail if error else "",
        "error_field": _field_of(error),
    }
    status = error.status if error else 200
    return render(request, "console/new.html", context, visit=visit, status_code=status)


@router.get("/new", include_in_schema=False)
async def new_capture_form(request: Request, visit: UploaderUser) -> Response:
    return await _page(request, visit, dict(DEFAULTS))


@router.post("/new", include_in_schema=False)
async def new_capture(request: Request, visit: UploaderForm, services: ServicesDep) -> Response:
    principal = visit.principal
    form = await form_text(request)
    names = (*FIELDS, *PAGE_FIELDS, "scroll_lazy", "fail_on_status", *dict(CHECKS))
    values = {key: form.get(key, "") for key in names}
    try:
        options = parse_request(options_from(form))
        snapshot = await asyncio.to_thread(
            services.snapshots.create_page,
            principal.org_id,
            options,
            surface="console",
            actor=principal.email,
        )
    except SnapshotdError as error:
        return await _page(request, visit, values, error=error)
    return RedirectResponse(f"/console/snapshots/{snapshot.id}?done=queued", status_code=303)
