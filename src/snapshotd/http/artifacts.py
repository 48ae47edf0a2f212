"""Handing out a snapshot's artifact on any surface: its bytes streamed, or a redirect into the
bucket when the blob store can sign one. The native API, share links, the dialects and the
console all answer through `artifact_response`, so every surface sends the same headers and
honours the same redirect setting; `signed_artifact_response` serves the links `downloads.sign`
makes, which need no token. `bundle_response` hands out the signed bundle the same way on the
native API, the console and share links."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from functools import partial
from typing import Annotated, Any, BinaryIO

from fastapi import Path, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import AfterValidator, WithJsonSchema

from snapshotd.errors import RangeNotSatisfiable
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
ROLES = (
    "image, pdf, html, har, certificate_chain, wacz, manifest, timestamp (timestamp-2, …), diff "
    "or mhtml"
)


def _known_role(role: str) -> str:
    if re.match(ROLE_PATTERN, role) is None:
        raise ValueError(f"no artifact is called {role!r}; the roles are {ROLES}")
    return role


# The OpenAPI document keeps the pattern; a request outside it is told the roles, not the pattern.
ArtifactRole = Annotated[
    str,
    AfterValidator(_known_role),
    WithJsonSchema({"type": "string", "pattern": ROLE_PATTERN}),
    Path(),
]


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
        partial(services.snapshots.open_blob, artifact.sha256),
        {"Cache-Control": "private, no-cache"},
    )


def send_artifact(
    request: Request,
    snapshot_id: str,
    artifact: Artifact | ArtifactView,
    open_stream: Callable[[int], BinaryIO],
    headers: dict[str, str],
) -> Response:
    """The artifact's bytes streamed with `headers`, its ETag (the SHA-256) and its length; 304
    when the request's If-None-Match names it; the headers alone for HEAD. A Range of one span
    (RFC 9110 §14) is answered 206 with that span, which a web archive viewer needs to read a
    large WACZ without fetching all of it. `open_stream(offset)` opens the blob at `offset`,
    only when bytes are sent."""
    etag = f'"{artifact.sha256}"'
    headers = {**headers, "ETag": etag, "X-Content-SHA256": artifact.sha256}
    headers["Accept-Ranges"] = "bytes"
    if etag in _named_tags(request.headers.get("if-none-match", "")):
        return Response(status_code=304, headers=headers)
    if artifact.role in downloads.ATTACHMENT_ROLES:
        headers["Content-Disposition"] = f'attachment; filename="{snapshot_id}.{artifact.role}"'
        headers["Content-Security-Policy"] = "sandbox"
    span = _requested_span(request, etag, artifact.size)
    status, start, length = 200, 0, artifact.size
    if span is not None:
        start, end = span
        status, length = 206, end - start + 1
        headers["Content-Range"] = f"bytes {start}-{end}/{artifact.size}"
    headers["Content-Length"] = str(length)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=artifact.media_type)
    stream = open_stream(start)
    if length <= WHOLE:
        with stream:
            body = stream.read(length)
        return Response(body, status_code=status, headers=headers, media_type=artifact.media_type)

    def chunks() -> Any:
        left = length
        with stream:
            while left and (data := stream.read(min(CHUNK, left))):
                left -= len(data)
                yield data

    return StreamingResponse(
        chunks(), status_code=status, media_type=artifact.media_type, headers=headers
    )


def bundle_response(
    data: bytes, snapshot_id: str, headers: dict[str, str] | None = None
) -> Response:
    """A snapshot's signed bundle (services `Snapshots.bundle`), as a download named after it, with
    its SHA-256 in `X-Content-SHA256` as every artifact has, so a client can check what it got."""
    sent = {
        "Content-Disposition": f'attachment; filename="{snapshot_id}.zip"',
        "X-Content-SHA256": hashlib.sha256(data).hexdigest(),
        **(headers or {}),
    }
    return Response(data, media_type="application/zip", headers=sent)


def _requested_span(request: Request, etag: str, size: int) -> tuple[int, int] | None:
    """The first and last byte a Range header asks for, or None to send the whole artifact: no
    Range, an If-Range naming another version, a unit other than bytes, several spans, or a
    header that does not parse (RFC 9110 lets a server ignore those). A span that starts past
    the end is 416, with the length in Content-Range as the RFC asks."""
    header = request.headers.get("range")
    if not header or request.method not in ("GET", "HEAD"):
        return None
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip() != etag:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first + last).isdigit():
        return None
    if not first:  # the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(0, size - suffix), size - 1
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        raise _unsatisfiable(size)
    return start, min(int(last), size - 1) if last else size - 1


def _unsatisfiable(size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable(
        f"the range asked for lies beyond the artifact's {size} bytes",
        headers={"Content-Range": f"bytes */{size}"},
    )


def _named_tags(header: str) -> list[str]:
    """The entity tags an If-None-Match header lists, weak ones compared as strong (RFC 9110
    uses the weak comparison for If-None-Match)."""
    return [tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()]


def link_life(expires: int) -> int:
    """How long a redirect from a signed link expiring at `expires` (Unix seconds) may live."""
    return min(DIRECT_SECONDS, expires - int(time.time()))


def signed_artifact_response(
    request: Request,
    services: Services,
    snapshot_id: str,
    role: str,
    expires: int,
    sig: str,
    *,
    direct: bool = True,
) -> Response:
    """The artifact a link made by `downloads.sign` points at, once its signature checks out;
    the link stands in for a token, so it names the organization. `direct=False` always
    streams it, for a reader that may fetch from this host only."""
    org_id = services.downloads.verify(snapshot_id, role, expires, sig)
    direct_for = link_life(expires) if direct else None
    return artifact_response(request, services, org_id, snapshot_id, role, direct_for=direct_for)


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
