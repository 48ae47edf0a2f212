"""The console's render keys page, for admins: the organization's keys, a form that creates one
and shows its secret that once, with a link ready for an `<img src>`, and revoking a key.

It calls the same service as `/api/v1/render-keys`, so the audit log and the rate limit rules
apply alike; the API's admin role is asked for on every route.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import RedirectResponse

from snapshotd.errors import SnapshotdError
from snapshotd.http.console import views
from snapshotd.http.console.session import AdminForm, AdminUser, ConsoleRoute, Visit, render
from snapshotd.http.deps import Services, ServicesDep, public_base
from snapshotd.rules import Limit
from snapshotd.services.records import RenderKey
from snapshotd.services.render_keys import IssuedKey, key_state, signed_link

router = APIRouter(route_class=ConsoleRoute)

# The example link shows a page at the size sites show a page's preview image (og:image) at.
EXAMPLE_PAGE = "https://example.org/"
EXAMPLE_SIZE = (1200, 630)
DONE = {"revoked": "The render key is revoked: links signed with it answer 403."}


def rate_limit_words(chosen: str | None, default: str) -> str:
    """A key's request budget in words, and whether it is the instance's default."""
    limit = Limit.parse(default if chosen is None else chosen)
    words = "no limit" if limit is None else f"{limit.count} per {limit.seconds} s"
    return f"{words} (default)" if chosen is None else words


def _rows(keys: list[RenderKey], default: str) -> list[dict[str, Any]]:
    return [
        {
            "row": key,
            "state": key_state(key),
            "created": views.when(key.created_at),
            "last_used": views.when(key.last_used_at) or "never",
            "rate_limit": rate_limit_words(key.rate_limit, default),
        }
        for key in keys
    ]


def example(base_url: str, issued: IssuedKey) -> dict[str, str]:
    """A working link for the key just made, and the `<img>` tag that shows it."""
    width, height = EXAMPLE_SIZE
    query = urlencode({"url": EXAMPLE_PAGE, "width": width, "height": height})
    link = signed_link(base_url, issued.row.id, issued.secret, "png", query)
    tag = f'<img src="{link}" alt="A snapshot of {EXAMPLE_PAGE}" width="{width}" height="{height}">'
    return {"page": EXAMPLE_PAGE, "link": link, "tag": tag}


def _page(
    request: Request,
    visit: Visit,
    services: Services,
    *,
    issued: IssuedKey | None = None,
    values: dict[str, str] | None = None,
    error: SnapshotdError | None = None,
    notice: str = "",
) -> Response:
    default = services.settings.render_key_rate_limit
    context = {
        "nav": "render-keys",
        "rows": _rows(services.render_keys.list(visit.principal.org_id), default),
        "default_limit": default,
        "issued": issued,
        "example": example(public_base(request, services), issued) if issued else None,
        "values": values or {},
        "error": error.detail if error else "",
        "error_field": (error.field or "") if error else "",
        "notice": notice,
        "when": views.when,
    }
    status = error.status if error else 200
    return render(request, "console/render_keys.html", context, visit=visit, status_code=status)


@router.get("/render-keys", include_in_schema=False)
def render_keys_page(
    request: Request,
    visit: AdminUser,
    services: ServicesDep,
    done: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    return _page(request, visit, services, notice=DONE.get(done, ""))


@router.post("/render-keys", include_in_schema=False)
def create_render_key(
    request: Request,
    visit: AdminForm,
    services: ServicesDep,
    name: Annotated[str, Form(max_length=200)] = "",
    rate_limit: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    """Creates a key and answers the page itself, not a redirect: the secret is in this answer
    only, and never in an address that a browser's history would keep."""
    principal = visit.principal
    try:
        issued = services.render_keys.create(
            principal.org_id,
            name=name.strip(),
            rate_limit=rate_limit.strip() or None,
            actor=principal.email,
        )
    except SnapshotdError as error:
        values = {"name": name, "rate_limit": rate_limit}
        return _page(request, visit, services, values=values, error=error)
    return _page(request, visit, services, issued=issued)


@router.post("/render-keys/{key_id}/revoke", include_in_schema=False)
def revoke_render_key(key_id: str, visit: AdminForm, services: ServicesDep) -> Response:
    principal = visit.principal
    services.render_keys.revoke(principal.org_id, key_id, actor=principal.email)
    return RedirectResponse("/console/render-keys?done=revoked", status_code=303)
