"""Handing out a snapshot's artifact on any surface: its bytes streamed, or a redirect into the
bucket when the blob store can sign one. The native API, share links, the dialects and the
console all answer through `artifact_response`, so every surface sends the same headers and
honours the same redirect setting; `signed_artifact_response` serves the links `downloads.sign`
makes, which need no token."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any, BinaryIO

from fastapi import Path, Request, Response
from fastapi.responses import StreamingResponse

from snapshotd.http.deps import Services
from snapshotd.services import downloads
from snapshotd.services.records import Artifact
from snapshotd.services.snapshot_reads import ArtifactView

CHUNK = 256 * 1024
# An artifact up to this size is read at once and sent as one body: streaming it would cost
# trips to a thread pool for every chunk, more than reading it.
WHOLE = 1024 * 1024
# A signed-in download redirected to the bucket gets a URL this short-lived: enough to follow the
# redirect, too short to be worth passing around (share links exist for that).
DIRECT_SECONDS = 300
# The artifact roles a route may name: the fixed ones, plus `timestamp-2`, `timestamp-3`, … when
# several time-stamping authorities stamped one manifest.
ROLE_PATTERN = (
    r"^(image|pdf|html|mhtml|har|certificate_chain|wacz|manifest|diff|timestamp(-[0-9]{1,2})?)$"
)
ArtifactRole = Annotated[str, Path(pattern=ROLE_PATTERN)]


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
    artifact = services.snapshots.artifact(org_id, snapshot_id, role)
    return send_artifact(
        request,
        snapshot_id,
        artifact,
        lambda: services.snapshots.open_blob(artifact.sha256),
        {"Cache-Control": "private, no-cache"},
    )


def send_artifact(
    request: Request,
    snapshot_id: str,
    artifact: Artifact | ArtifactView,
    open_stream: Callable[[], BinaryIO],
    headers: dict[str, str],
) -> Response:
    """The artifact's bytes streamed with `headers`, its ETag (the SHA-256) and its length; 304
    when the request's If-None-Match names it; the headers alone for HEAD. The blob is opened
    only when its bytes are sent."""
    etag = f'"{artifact.sha256}"'
    headers = {**headers, "ETag": etag, "X-Content-SHA256": artifact.sha256}
    if etag in _named_tags(request.headers.get("if-none-match", "")):
        return Response(status_code=304, headers=headers)
    headers["Content-Length"] = str(artifact.size)
    if artifact.role in downloads.ATTACHMENT_ROLES:
        headers["Content-Disposition"] = f'attachment; filename="{snapshot_id}.{artifact.role}"'
        headers["Content-Security-Policy"] = "sandbox"
    if request.method == "HEAD":
        return Response(headers=headers, media_type=artifact.media_type)
    stream = open_stream()
    if artifact.size <= WHOLE:
        with stream:
            return Response(stream.read(), headers=headers, media_type=artifact.media_type)

    def chunks() -> Any:
        with stream:
            while data := stream.read(CHUNK):
                yield data

    return StreamingResponse(chunks(), media_type=artifact.media_type, headers=headers)


def _named_tags(header: str) -> list[str]:
    """The entity tags an If-None-Match header lists, weak ones compared as strong (RFC 9110
    uses the weak comparison for If-None-Match)."""
    return [tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()]


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
