"""What every HTTP surface reads and writes the same way: JSON bodies, dates, signed download
links, sign-in with a permission, and the registration each dialect package exports.

Dialects import this module and never each other (an import-linter contract), so a helper two
dialects need lives here rather than in one of them.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response

from snapshotd.errors import BadRequest
from snapshotd.http import problems
from snapshotd.http.artifacts import signed_artifact_response
from snapshotd.http.deps import ServicesDep, principal_of
from snapshotd.services.accounts import Principal
from snapshotd.services.principals import Credentials


@dataclass(frozen=True)
class Dialect:
    """One vendor's API: its routers, in the order they must be matched, and the renderer of its
    error shape for each path prefix it owns."""

    routers: tuple[APIRouter, ...]
    renderers: Mapping[str, problems.Renderer]

    def install(self, app: FastAPI) -> None:
        for router in self.routers:
            app.include_router(router)
        for prefix, render_error in self.renderers.items():
            problems.register_renderer(app, prefix, render_error)


# -- bodies ---------------------------------------------------------------------------------------


async def json_object(request: Request) -> dict[str, Any]:
    """The request's body as a JSON object; an empty body (no bytes at all) is an empty object."""
    return parse_json_object(await request.body())


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Anything but a JSON object is a 400, which each surface renders in its own shape: a
    document nested too deeply for the parser as much as a syntax error, NaN or Infinity, which
    JSON does not have and which no answer could echo back, and blanks, which are no document.
    Only a body of no bytes at all reads as an empty object."""
    if not raw:
        return {}
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise BadRequest("the body is not valid JSON: nested too deeply") from None
    except ValueError as error:
        raise BadRequest(f"the body is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


# -- dates read from requests (snapshotd.timestamps writes them) ---------------------------------


def parse_date(value: str, field: str) -> datetime:
    """ISO 8601 as SDKs send it (`2024-01-01T00:00:00.000000+0000`), with `Z` or an offset, or
    `yyyy-MM-dd HH:mm:ss` as curl users write it; no offset means UTC."""
    text = value.strip()
    if not text:
        raise BadRequest("is required", field=field)
    try:
        moment = datetime.fromisoformat(text.replace(" ", "T", 1) if " " in text else text)
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise BadRequest(
            f"{value!r} is not a date: use ISO 8601 such as 2024-01-31T12:00:00Z", field=field
        ) from None
    if not 1970 <= moment.year <= 9000:
        raise BadRequest(f"{value!r} is out of range", field=field)
    return moment


# -- signed downloads -----------------------------------------------------------------------------


def add_signed_download(router: APIRouter, path: str, *, suffix: str = "", **route: Any) -> None:
    """Adds `GET path` serving a snapshot's image through a link `downloads.sign` made, with no
    token: `path` names the snapshot as `{snapshot_id}`, followed by `suffix` when the dialect's
    links carry a file extension there. `route` goes to `add_api_route` (summary, responses)."""

    def download(
        snapshot_id: str, expires: int, sig: str, request: Request, services: ServicesDep
    ) -> Response:
        snapshot_id = snapshot_id.removesuffix(suffix) if suffix else snapshot_id
        return signed_artifact_response(request, services, snapshot_id, "image", expires, sig)

    router.add_api_route(path, download, methods=["GET"], **route)


# -- permissions ----------------------------------------------------------------------------------

PrincipalCheck = Callable[..., Awaitable[Principal]]


def principal_factory(
    presented: Callable[[Request], Credentials],
) -> Callable[[str], PrincipalCheck]:
    """For a surface that reads credentials its own way (Bearer only, a `?token=`, Basic): a
    factory of dependencies, `principal(permission)`, that sign the request in and let it
    through only with `permission` (accounts.PERMISSIONS), so each route's signature says what
    it needs. They are coroutines: a remembered principal costs no worker thread."""

    def principal(permission: str) -> PrincipalCheck:
        async def check(request: Request, services: ServicesDep) -> Principal:
            found = await principal_of(request, services, presented(request))
            found.require(permission)
            return found

        return check

    return principal
