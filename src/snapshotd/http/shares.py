"""Share links: the API that makes and revokes them, and the public pages at /s/{id}.

Share responses are never cached (`Cache-Control: no-store`), so a revoked link stops working at
once even behind a proxy; the pages send no Referer, so a link does not leak from them. Failed
look-ups count against the visitor's address, which is answered 429 once it has guessed too often.
"""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from snapshotd.errors import Gone, NotFound, SnapshotdError, Unauthorized
from snapshotd.http import replay, share_verify
from snapshotd.http.artifacts import artifact_response, bundle_response, link_life
from snapshotd.http.deps import (
    PrincipalDep,
    ServicesDep,
    SharerDep,
    client_address,
    credentials,
    principal_from,
    public_base,
)
from snapshotd.http.problems import error_headers, problem
from snapshotd.services import dns_api_tests, network_tests
from snapshotd.services.accounts import Principal
from snapshotd.services.records import Share, Snapshot
from snapshotd.services.shares import share_state
from snapshotd.timestamps import iso

router = APIRouter(tags=["shares"])
templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))

NO_STORE = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
}
# The replay page frames the viewer on the replay host (replay.frame_context); share pages
# style themselves inline.
REPLAY_POLICY = (
    "default-src 'self'; style-src 'self' 'unsafe-inline'; object-src 'none'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class ShareCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    public: StrictBool = Field(
        True, description="false makes a private link ('saved event') for members only."
    )
    expires_in: Annotated[
        int | None, Field(ge=1, description="Seconds; capped by the snapshot.")
    ] = None
    evidence: StrictBool = Field(
        False, description="true: the link also serves the signed evidence bundle at /bundle."
    )
    replay: StrictBool = Field(
        False, description="true: the link also offers the archived page's replay."
    )


def share_url(request: Request, services: ServicesDep, share_id: str) -> str:
    return f"{public_base(request, services)}/s/{share_id}"


def share_body(request: Request, services: ServicesDep, share: Share) -> dict[str, Any]:
    return {
        "id": share.id,
        "url": share_url(request, services, share.id),
        "snapshot_id": share.snapshot_id,
        "public": share.public,
        "evidence": share.evidence,
        "replay": share.replay,
        "state": share_state(share),
        "created_by": share.created_by,
        "created_at": iso(share.created_at),
        "expires_at": iso(share.expires_at),
        "revoked_at": iso(share.revoked_at),
    }


@router.post("/api/v1/snapshots/{snapshot_id}/shares", status_code=201, summary="Share a snapshot")
def create_share(
    snapshot_id: str,
    principal: SharerDep,
    services: ServicesDep,
    request: Request,
    response: Response,
    body: ShareCreate | None = None,
) -> dict[str, Any]:
    body = body or ShareCreate()
    share = services.shares.create(
        principal,
        snapshot_id,
        public=body.public,
        expires_in=body.expires_in,
        evidence=body.evidence,
        replay=body.replay,
    )
    response.headers.update(NO_STORE)
    return share_body(request, services, share)


@router.get("/api/v1/snapshots/{snapshot_id}/shares", summary="A snapshot's share links")
def list_shares(
    snapshot_id: str,
    principal: PrincipalDep,
    services: ServicesDep,
    request: Request,
    response: Response,
) -> dict[str, Any]:
    shares = services.shares.list(principal.org_id, snapshot_id)
    response.headers.update(NO_STORE)
    return {"items": [share_body(request, services, share) for share in shares]}


@router.delete("/api/v1/shares/{share_id}", status_code=204, summary="Revoke a share link")
def revoke_share(share_id: str, principal: SharerDep, services: ServicesDep) -> Response:
    services.shares.revoke(principal, share_id)
    return Response(status_code=204, headers=NO_STORE)


def _visit(request: Request, services: ServicesDep, share_id: str) -> tuple[Share, Snapshot]:
    """Opens a link for a visitor; a private link needs the organization's token."""
    address = client_address(request)
    services.misses.check(address)
    viewer: Principal | None = None
    presented = credentials(request)
    if presented.token:
        # A bad token only means "not signed in" here: a public link still opens.
        with contextlib.suppress(Unauthorized):
            viewer = principal_from(services, request, presented)
    try:
        return services.shares.open(share_id, viewer)
    except (NotFound, Gone):
        services.misses.take(address)
        raise


@router.get("/s/{share_id}", response_class=HTMLResponse, include_in_schema=False)
def share_page(share_id: str, request: Request, services: ServicesDep) -> Response:
    share, snapshot = _visit(request, services, share_id)
    image = next((a for a in snapshot.artifacts if a.role == "image"), None)
    url = share_url(request, services, share.id)
    rounds = _rounds(services, snapshot)
    return templates.TemplateResponse(
        request,
        "share.html",
        {
            "share": share,
            "snapshot": snapshot,
            "image": image,
            "page_url": url,
            "image_url": f"{url}/image" if image else None,
            "pdf": any(a.role == "pdf" for a in snapshot.artifacts),
            "replay_url": f"{url}/replay" if _offers_replay(services, share, snapshot) else None,
            "captured_at": _readable(snapshot.completed_at or snapshot.created_at),
            "expires_at": _readable(share.expires_at),
            "meta": snapshot.meta or {},
            "title": _title(snapshot),
            "subject": _subject(snapshot),
            "rounds": rounds,
            "availability": _availability(rounds),
            "network": network_tests.by_agent(
                [(row["agent"], row["time"], row["network"]) for row in rounds]
            ),
        },
        headers=NO_STORE,
    )


def _readable(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _rounds(services: ServicesDep, snapshot: Snapshot) -> list[dict[str, Any]]:
    """A test window's frozen rounds as table rows."""
    if snapshot.kind != "test_window":
        return []
    rows = []
    kind = str(snapshot.options.get("type", "http-server"))
    for probe, agent in services.synthetic.saved_rounds(int(snapshot.options["test_id"])):
        result = probe.result or {}
        rows.append(
            {
                "time": _readable(datetime.fromtimestamp(probe.round_id, UTC)),
                "agent": agent,
                "status": result.get("error_type") or "OK",
                "detail": result.get("error_details") or "",
                "code": result.get("response_code"),
                "response": result.get("response_time"),
                "total": result.get("total_time", result.get("page_load_time")),
                "lines": dns_api_tests.round_lines(kind, result),
                "network": network_tests.network_of(kind, result),
            }
        )
    return rows


def _availability(rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per agent, one cell per round, available or not: a strip chart in the page."""
    strips: dict[str, list[dict[str, Any]]] = {}
    for row in rounds:
        strips.setdefault(row["agent"], []).append(row)
    return [
        {
            "agent": agent,
            "cells": cells,
            "available": sum(cell["status"] == "OK" for cell in cells),
        }
        for agent, cells in strips.items()
    ]


def _title(snapshot: Snapshot) -> str:
    meta = snapshot.meta or {}
    if snapshot.kind == "test_window":
        return str(snapshot.options.get("display_name") or "Test snapshot")
    if snapshot.kind == "chart":
        return str(snapshot.options.get("chart", {}).get("name") or "Chart")
    return str(meta.get("title") or snapshot.url or "Snapshot")


def _subject(snapshot: Snapshot) -> str:
    """What the snapshot shows, in words: a page's URL, or a chart's or test's name and window."""
    if snapshot.kind == "test_window":
        start, end = (int(snapshot.options[k]) for k in ("start_round", "end_round"))
        window = " to ".join(
            datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M") for t in (start, end)
        )
        return f"test “{_title(snapshot)}” rounds, {window} UTC"
    if snapshot.kind == "chart":
        end = int(snapshot.options.get("end_time", 0))
        start = end - int(snapshot.options.get("duration", 0))
        window = " to ".join(
            datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M") for t in (start, end)
        )
        return f"chart “{_title(snapshot)}”, {window} UTC"
    return snapshot.url


# Registered before /s/{share_id}/{role}, which would take "verify" for an artifact's role.
@router.get("/s/{share_id}/verify", response_class=HTMLResponse, include_in_schema=False)
def share_verify_page(share_id: str, request: Request, services: ServicesDep) -> Response:
    share, snapshot = _visit(request, services, share_id)
    report = services.verifier.check(snapshot)
    base = public_base(request, services)
    return templates.TemplateResponse(
        request,
        "share_verify.html",
        {
            "share": share,
            "snapshot": snapshot,
            "report": report,
            "verdict": share_verify.summary(report),
            "checks": share_verify.CHECKS,
            "stamp_state": share_verify.STAMP_STATES.get(report.timestamp, report.timestamp),
            "commands": share_verify.commands(share, snapshot, report, base=base),
            "key_url": base + share_verify.KEY_PATH,
            "page_url": share_url(request, services, share.id),
            "title": _title(snapshot),
            "subject": _subject(snapshot),
            "captured_at": _readable(snapshot.completed_at or snapshot.created_at),
        },
        headers=NO_STORE,
    )


@router.get("/s/{share_id}/verify.json", include_in_schema=False)
def share_verify_json(share_id: str, request: Request, services: ServicesDep) -> Response:
    share, snapshot = _visit(request, services, share_id)
    report = services.verifier.check(snapshot)
    body = share_verify.verify_json(
        share,
        snapshot,
        report,
        base=public_base(request, services),
        subject=_subject(snapshot),
    )
    return JSONResponse(body, headers=NO_STORE)


@router.get("/s/{share_id}/bundle", include_in_schema=False)
def share_bundle(share_id: str, request: Request, services: ServicesDep) -> Response:
    """The signed bundle, the same bytes as /api/v1/snapshots/{id}/bundle, for a link made with
    `evidence`; any other link answers as for a file it does not serve."""
    share, snapshot = _visit(request, services, share_id)
    if not share.evidence:
        raise NotFound("this share link does not offer the evidence bundle")
    data = services.snapshots.bundle(snapshot.org_id, snapshot.id)
    return bundle_response(data, snapshot.id, NO_STORE)


def _offers_replay(services: ServicesDep, share: Share, snapshot: Snapshot) -> bool:
    """Whether the link's page offers the archived page: replay is on, for the link and on this
    server, and there is an archive."""
    archived = any(a.role == replay.ARCHIVE_ROLE for a in snapshot.artifacts)
    return share.replay and bool(services.settings.replay_origin) and archived


# Before the artifact route below, which would take `replay` for a role.
@router.get("/s/{share_id}/replay", response_class=HTMLResponse, include_in_schema=False)
def share_replay(share_id: str, request: Request, services: ServicesDep) -> Response:
    """The archived page in the replay viewer, for a link made with `replay` on: framed from the
    replay host, over an archive link that lives no longer than the share link."""
    share, snapshot = _visit(request, services, share_id)
    if not share.replay:
        raise NotFound("this share link does not offer the archived page")
    left = int(share.expires_at.timestamp()) - int(time.time())
    parts = urlsplit(public_base(request, services))
    frame = replay.frame_context(
        services,
        snapshot,
        lifetime=max(1, min(replay.LINK_SECONDS, left)),
        parent=f"{parts.scheme}://{parts.netloc}",
    )
    policy = replay.framing_policy(REPLAY_POLICY, frame["replay_origin"])
    return templates.TemplateResponse(
        request,
        "share_replay.html",
        {
            "snapshot": snapshot,
            "page_url": share_url(request, services, share.id),
            "captured_at": _readable(snapshot.completed_at or snapshot.created_at),
            "expires_at": _readable(share.expires_at),
            "title": _title(snapshot),
            "subject": _subject(snapshot),
            **frame,
        },
        headers={**NO_STORE, "Content-Security-Policy": policy},
    )


@router.get("/s/{share_id}/{role}", include_in_schema=False)
def share_artifact(share_id: str, role: str, request: Request, services: ServicesDep) -> Response:
    if role not in ("image", "pdf", replay.ARCHIVE_ROLE):
        raise NotFound("a share link serves its image, PDF and web archive only")
    share, snapshot = _visit(request, services, share_id)
    expires = int(share.expires_at.timestamp())
    # The web archive is streamed, never redirected to the bucket, so that a WACZ reader in a
    # page can read it by ranges from this origin (the bucket answers no CORS).
    direct_for: int | None = link_life(expires)
    if role == replay.ARCHIVE_ROLE:
        if not share.replay:
            raise NotFound("this share link does not offer the archived page")
        direct_for = None
    response = artifact_response(
        request, services, snapshot.org_id, snapshot.id, role, direct_for=direct_for
    )
    response.headers.update(NO_STORE)
    return response


def render_error(request: Request, error: SnapshotdError) -> Response:
    """Share pages answer errors as a small HTML page a visitor can read; the JSON form of the
    verify page answers problem+json."""
    if request.url.path.endswith("/verify.json"):
        response = problem(request, error)
        response.headers.update(NO_STORE)
        return response
    return templates.TemplateResponse(
        request,
        "share_error.html",
        {"status": error.status, "title": error.title, "detail": error.detail},
        status_code=error.status,
        headers={**error_headers(error), **NO_STORE},
    )
