"""Delivering a snapshot's files under /api/v1: one artifact's bytes, streamed or redirected to
the bucket, and the signed bundle. Share links, the dialects and the console hand out artifacts
through `artifact_response` too, so every surface sends the same headers and honours the same
redirect setting."""

from __future__ import annotations

import time
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from snapshotd.http import openapi
from snapshotd.http.deps import PrincipalDep, Services, ServicesDep
from snapshotd.services import downloads

router = APIRouter(prefix="/api/v1", tags=["snapshots"])

CHUNK = 256 * 1024
# A signed-in download redirected to the bucket gets a URL this short-lived: enough to follow the
# redirect, too short to be worth passing around (share links exist for that).
DIRECT_SECONDS = 300
ARTIFACT_TYPES = (
    *openapi.IMAGES,
    "application/pdf",
    "text/html",
    "multipart/related",
    "application/json",
)


def artifact_response(
    request: Request,
    services: Services,
    org_id: str,
    snapshot_id: str,
    role: str,
    *,
    direct_for: int | None = None,
) -> Response:
    """The artifact's bytes, streamed. Given `direct_for` seconds and blobs in S3 (with
    SNAPSHOTD_S3_REDIRECT_DOWNLOADS on), a 302 to a presigned bucket URL living no longer than
    that nor the snapshot instead, so large downloads never pass through an API process."""
    if (
        direct_for is not None
        and services.settings.blobs
        and services.settings.s3_redirect_downloads
    ):
        redirect = _direct_redirect(services, org_id, snapshot_id, role, direct_for)
        if redirect is not None:
            return redirect
    artifact, stream = services.snapshots.open_artifact(org_id, snapshot_id, role)
    etag = f'"{artifact.sha256}"'
    headers = {
        "ETag": etag,
        "Cache-Control": "private, no-cache",
        "X-Content-SHA256": artifact.sha256,
    }
    if request.headers.get("if-none-match") == etag:
        stream.close()
        return Response(status_code=304, headers=headers)
    headers["Content-Length"] = str(artifact.size)
    if artifact.role in downloads.ATTACHMENT_ROLES:
        headers["Content-Disposition"] = f'attachment; filename="{snapshot_id}.{artifact.role}"'
        headers["Content-Security-Policy"] = "sandbox"

    def chunks() -> Any:
        with stream:
            while data := stream.read(CHUNK):
                yield data

    return StreamingResponse(chunks(), media_type=artifact.media_type, headers=headers)


def link_life(expires: int) -> int:
    """How long a redirect from a signed link expiring at `expires` (Unix seconds) may live."""
    return min(DIRECT_SECONDS, expires - int(time.time()))


def signed_artifact_response(
    request: Request, services: Services, snapshot_id: str, role: str, expires: int, sig: str
) -> Response:
    """The artifact a link made by `downloads.sign` points at, once its signature checks out;
    the link stands in for a token, so it names the organization."""
    org_id = services.downloads.verify(snapshot_id, role, expires, sig)
    return artifact_response(
        request, services, org_id, snapshot_id, role, direct_for=link_life(expires)
    )


def _direct_redirect(
    services: Services, org_id: str, snapshot_id: str, role: str, lifetime: int
) -> Response | None:
    snapshot = services.snapshots.get(org_id, snapshot_id)
    artifact = next((each for each in snapshot.artifacts if each.role == role), None)
    if artifact is None:
        return None  # the streaming path explains why (still running, or no such artifact)
    location = services.downloads.direct_url(snapshot, artifact, lifetime=lifetime)
    if location is None:
        return None
    headers = {
        "Location": location,
        "Cache-Control": "no-store",
        "X-Content-SHA256": artifact.sha256,
    }
    return Response(status_code=302, headers=headers)


@router.get(
    "/snapshots/{snapshot_id}/bundle",
    summary="The signed manifest and every artifact, zipped",
    response_class=Response,
    responses={**openapi.answers(409), **openapi.files("application/zip")},
)
def get_bundle(snapshot_id: str, principal: PrincipalDep, services: ServicesDep) -> Response:
    data = services.snapshots.bundle(principal.org_id, snapshot_id)
    disposition = f'attachment; filename="{snapshot_id}.zip"'
    return Response(
        data, media_type="application/zip", headers={"Content-Disposition": disposition}
    )


def bundle_of(services: Services, org_id: str, snapshot_id: str) -> bytes:
    """The console's bundle download asks for it by this name."""
    return services.snapshots.bundle(org_id, snapshot_id)


@router.get(
    "/snapshots/{snapshot_id}/{artifact}",
    summary="Download an artifact",
    response_class=Response,
    responses={**openapi.answers(409), **openapi.files(*ARTIFACT_TYPES)},
)
def get_artifact(
    snapshot_id: str,
    artifact: Literal["image", "pdf", "html", "mhtml", "manifest", "diff"],
    request: Request,
    principal: PrincipalDep,
    services: ServicesDep,
) -> Response:
    return artifact_response(
        request, services, principal.org_id, snapshot_id, artifact, direct_for=DIRECT_SECONDS
    )
