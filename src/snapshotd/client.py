"""A synchronous Python client for the snapshotd native API (/api/v1), shaped like httpx.

    with SnapshotClient(base_url="http://127.0.0.1:8000", token="<api token>") as client:
        queued = client.create("https://example.com/", width=1280, full_page=True)
        snapshot = client.wait(queued.id, timeout=60)
        png = client.download(snapshot.id, "image", path="example.png")
        print(snapshot.metadata["title"], len(png))
        print(client.share(snapshot, expires_in=86400).url)

A render link shows a capture in an `<img src>` without a token: it is signed here, with a render
key's secret, and costs no request to build (`render_url`, or the client's method of that name).

Every non-2xx answer raises a typed error whose message is the problem+json `detail`:

    ClientError
    ├── BadRequestError (400, 413, 422)
    ├── AuthenticationError (401)
    ├── PermissionDeniedError (403)
    ├── NotFoundError (404, 410)
    ├── ConflictError (409)
    ├── RateLimitedError (429) — `.retry_after` in seconds
    ├── ServerError (5xx)
    ├── SnapshotTimeout — `wait` gave up; also a TimeoutError
    ├── CaptureFailedError — the snapshot failed; `.snapshot.status_message` says why
    └── IntegrityError — a download did not match its X-Content-SHA256

Network failures surface as httpx's own exceptions.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote, urlencode

import httpx

from snapshotd import __version__

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "CaptureFailedError",
    "ConflictError",
    "IntegrityError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ServerError",
    "Share",
    "Snapshot",
    "SnapshotClient",
    "SnapshotTimeout",
    "ClientError",
    "render_url",
]

RENDER_FORMATS = ("png", "jpeg", "webp", "pdf")


@dataclass(frozen=True)
class Snapshot:
    id: str
    kind: str
    status: str
    status_message: str | None
    url: str
    created_at: str | None
    completed_at: str | None
    expires_at: str | None
    metadata: dict[str, Any]
    artifacts: list[dict[str, Any]]
    options: dict[str, Any]
    job: dict[str, Any] | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Snapshot:
        return cls(
            id=body["id"],
            kind=body.get("kind", "page"),
            status=body["status"],
            status_message=body.get("status_message"),
            url=body.get("url", ""),
            created_at=body.get("created_at"),
            completed_at=body.get("completed_at"),
            expires_at=body.get("expires_at"),
            metadata=dict(body.get("metadata") or {}),
            artifacts=[dict(artifact) for artifact in body.get("artifacts") or ()],
            options=dict(body.get("options") or {}),
            job=dict(body["job"]) if body.get("job") else None,
            raw=dict(body),
        )


@dataclass(frozen=True)
class Share:
    """A share link: `url` opens the snapshot's page for whoever holds it (members only when not
    `public`) until `expires_at` or until it is revoked; with `evidence` it also serves the signed
    bundle, with `replay` the archived page."""

    id: str
    url: str
    snapshot_id: str
    public: bool
    state: str
    created_at: str | None
    expires_at: str | None
    revoked_at: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)
    evidence: bool = False
    replay: bool = False

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Share:
        return cls(
            id=body["id"],
            url=body["url"],
            snapshot_id=body["snapshot_id"],
            public=bool(body.get("public", True)),
            evidence=bool(body.get("evidence", False)),
            replay=bool(body.get("replay", False)),
            state=body.get("state", "active"),
            created_at=body.get("created_at"),
            expires_at=body.get("expires_at"),
            revoked_at=body.get("revoked_at"),
            raw=dict(body),
        )


class ClientError(Exception):
    def __init__(
        self, message: str, *, status: int | None = None, problem: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.problem: dict[str, Any] = problem or {}


class BadRequestError(ClientError): ...


class AuthenticationError(ClientError): ...


class PermissionDeniedError(ClientError): ...


class NotFoundError(ClientError): ...


class ConflictError(ClientError): ...


class RateLimitedError(ClientError):
    retry_after: float | None = None


class ServerError(ClientError): ...


class SnapshotTimeout(ClientError, TimeoutError):
    def __init__(self, message: str, *, snapshot: Snapshot) -> None:
        super().__init__(message)
        self.snapshot = snapshot


class CaptureFailedError(ClientError):
    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__(snapshot.status_message or f"snapshot {snapshot.id} failed")
        self.snapshot = snapshot


class IntegrityError(ClientError): ...


_ERRORS: dict[int, type[ClientError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    410: NotFoundError,
    413: BadRequestError,
    422: BadRequestError,
    429: RateLimitedError,
}


def _retry_after(value: str | None) -> float | None:
    """Retry-After is either delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    if value.strip().isascii() and value.strip().isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when.replace(tzinfo=when.tzinfo or UTC) - datetime.now(UTC)).total_seconds())


def _error_for(response: httpx.Response) -> ClientError:
    try:
        body = response.json()
    except ValueError:
        body = None
    problem: dict[str, Any] = body if isinstance(body, dict) else {}
    status = response.status_code
    message = str(problem.get("detail") or problem.get("title") or f"HTTP {status}")
    cls = _ERRORS.get(status) or (ServerError if status >= 500 else ClientError)
    error = cls(message, status=status, problem=problem)
    if isinstance(error, RateLimitedError):
        error.retry_after = _retry_after(response.headers.get("Retry-After"))
    return error


def _verified(response: httpx.Response) -> bytes:
    data = response.content
    # With blobs in S3 the server answers a redirect to the bucket; the hash is on that answer.
    expected = next(
        (
            each.headers["X-Content-SHA256"]
            for each in [response, *response.history]
            if "X-Content-SHA256" in each.headers
        ),
        None,
    )
    actual = hashlib.sha256(data).hexdigest()
    # The header is always sent with artifacts; its absence means something in between rewrote
    # the response, so the bytes cannot be vouched for.
    if expected is None or expected.strip().lower() != actual:
        raise IntegrityError(f"artifact body has SHA-256 {actual}; the server announced {expected}")
    return data


def _as_query(value: Any) -> Any:
    """An option as the query string carries it: a location {latitude, longitude, accuracy} as
    "latitude,longitude,accuracy"; lists repeat their name (httpx does that)."""
    if isinstance(value, dict) and "latitude" in value and "longitude" in value:
        parts = [value["latitude"], value["longitude"], value.get("accuracy")]
        return ",".join(str(part) for part in parts if part is not None)
    return value


def _link_pairs(name: str, value: Any) -> builtins.list[tuple[str, str]]:
    """An option as a render link carries it: text the server reads back to the same value."""
    value = _as_query(value)
    if value is None:
        return []
    if isinstance(value, builtins.list | tuple):
        return [pair for each in value for pair in _link_pairs(name, each)]
    if isinstance(value, bool):
        return [(name, "true" if value else "false")]
    if isinstance(value, Mapping):
        raise TypeError(f"{name} cannot travel in a render link")
    return [(name, str(value))]


def _unix_seconds(expires: int | datetime | timedelta) -> int:
    if isinstance(expires, timedelta):
        return int(time.time() + expires.total_seconds())
    if isinstance(expires, datetime):
        # A naive time is read as UTC, the zone every time snapshotd shows is in.
        return int((expires if expires.tzinfo else expires.replace(tzinfo=UTC)).timestamp())
    return int(expires)


def render_url(
    base_url: str,
    url: str,
    *,
    key_id: str,
    secret: str,
    format: str = "png",
    expires: int | datetime | timedelta | None = None,
    cache_ttl: int | None = None,
    force: bool = False,
    **options: Any,
) -> str:
    """A signed render link to the server at `base_url` for a picture of `url`, built here with
    no request, so a web app holding only a render key can make links for its pages.

    `options` are the capture options of `GET /api/v1/capture` (width, full_page, geolocation,
    fail_on_status...); None leaves one out. `expires` is when the link stops working (then 410):
    Unix seconds, a datetime (naive means UTC), or a timedelta from now. `cache_ttl` is how old a
    capture the server may answer with, in seconds; `force` asks for a new capture on every
    request, so it suits a link that is fetched rarely.
    """
    if format not in RENDER_FORMATS:
        raise ValueError(f"format is one of {', '.join(RENDER_FORMATS)}, not {format!r}")
    pairs = [("url", url)]
    for name, value in options.items():
        pairs += _link_pairs(name, value)
    if expires is not None:
        pairs.append(("expires", str(_unix_seconds(expires))))
    pairs += _link_pairs("cache_ttl", cache_ttl)
    if force:
        pairs.append(("force", "true"))
    # The server checks the signature against the query string exactly as it arrives, so the
    # text signed is the text sent, with the signature last.
    query = urlencode(pairs)
    mac = hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    path = f"/render/{quote(key_id, safe='')}/{format}"
    return f"{base_url.rstrip('/')}{path}?{query}&signature={mac}"


def _snapshot_id(snapshot: str | Snapshot) -> str:
    # Quoted so an id can never walk to another route, e.g. "../jobs/x".
    return quote(snapshot.id if isinstance(snapshot, Snapshot) else snapshot, safe="")


class SnapshotClient:
    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url,
            transport=transport,
            timeout=timeout,
            headers={
                "Authorization": f"Bearer {token}",
                "User-Agent": f"snapshotd-client/{__version__}",
            },
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        if not response.is_success:
            raise _error_for(response)
        return response

    def create(self, url: str, *, idempotency_key: str | None = None, **options: Any) -> Snapshot:
        """Queues a page capture; `options` are the native fields (width, selector, format...)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body = {"url": url, **options}
        response = self._request("POST", "/api/v1/snapshots", json=body, headers=headers)
        return Snapshot.from_json(response.json())

    def get(self, snapshot_id: str | Snapshot) -> Snapshot:
        response = self._request("GET", f"/api/v1/snapshots/{_snapshot_id(snapshot_id)}")
        return Snapshot.from_json(response.json())

    def list(
        self, *, status: str | None = None, kind: str | None = None, limit: int = 50
    ) -> Iterator[Snapshot]:
        """Every matching snapshot, newest first, fetched `limit` per request as it is iterated."""
        params: dict[str, Any] = {"limit": limit, "status": status, "kind": kind}
        params = {key: value for key, value in params.items() if value is not None}
        while True:
            page = self._request("GET", "/api/v1/snapshots", params=params).json()
            for item in page["items"]:
                yield Snapshot.from_json(item)
            # The cursor, not links.next: the server's next link drops the status/kind filters.
            cursor = page.get("next_cursor")
            if not cursor:
                return
            params["cursor"] = cursor

    def wait(
        self, snapshot_id: str | Snapshot, *, timeout: float = 120.0, interval: float = 0.25
    ) -> Snapshot:
        """Polls until the snapshot succeeds; raises CaptureFailedError when it fails."""
        deadline = time.monotonic() + timeout
        while True:
            snapshot = self.get(snapshot_id)
            if snapshot.status == "success":
                return snapshot
            if snapshot.status == "failed":
                raise CaptureFailedError(snapshot)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SnapshotTimeout(
                    f"snapshot {snapshot.id} is still {snapshot.status} after {timeout:g}s",
                    snapshot=snapshot,
                )
            time.sleep(min(interval, remaining))

    def download(
        self,
        snapshot_id: str | Snapshot,
        artifact: str = "image",
        path: str | os.PathLike[str] | None = None,
    ) -> bytes:
        """An artifact's bytes, checked against the server's SHA-256 before `path` is written."""
        where = f"/api/v1/snapshots/{_snapshot_id(snapshot_id)}/{quote(artifact, safe='')}"
        # httpx drops the Authorization header when a redirect leaves this server's origin.
        response = self._request("GET", where, follow_redirects=True)
        data = _verified(response)
        if path is not None:
            Path(path).write_bytes(data)
        return data

    def bundle(
        self, snapshot_id: str | Snapshot, path: str | os.PathLike[str] | None = None
    ) -> bytes:
        """The signed bundle: the manifest, every evidence artifact, the trusted timestamps and
        the key that verifies them, as a zip that `snapshotd verify` checks offline. Checked
        against the server's SHA-256 like any artifact."""
        return self.download(snapshot_id, "bundle", path)

    def delete(self, snapshot_id: str | Snapshot) -> None:
        self._request("DELETE", f"/api/v1/snapshots/{_snapshot_id(snapshot_id)}")

    def share(
        self,
        snapshot_id: str | Snapshot,
        *,
        public: bool = True,
        expires_in: int | None = None,
        evidence: bool = False,
        replay: bool = False,
    ) -> Share:
        """A new share link; `expires_in` seconds is capped by the snapshot's own expiry.
        `evidence` lets the link serve the signed bundle, `replay` the archived page."""
        body: dict[str, Any] = {"public": public}
        # Sent only when asked for, so a server that predates the switches still makes links.
        body.update({name: True for name, on in (("evidence", evidence), ("replay", replay)) if on})
        if expires_in is not None:
            body["expires_in"] = expires_in
        where = f"/api/v1/snapshots/{_snapshot_id(snapshot_id)}/shares"
        return Share.from_json(self._request("POST", where, json=body).json())

    def shares(self, snapshot_id: str | Snapshot) -> builtins.list[Share]:
        """The snapshot's share links, revoked and expired ones included."""
        where = f"/api/v1/snapshots/{_snapshot_id(snapshot_id)}/shares"
        return [Share.from_json(item) for item in self._request("GET", where).json()["items"]]

    def revoke_share(self, share: str | Share) -> None:
        """Revokes a link; it stops opening at once."""
        share_id = share.id if isinstance(share, Share) else share
        self._request("DELETE", f"/api/v1/shares/{quote(share_id, safe='')}")

    def capture(self, url: str, **options: Any) -> bytes:
        """Captures while the request waits and answers the image (or PDF) bytes. The options
        travel as query parameters, which the server reads as scalars only."""
        params = {"url": url, **{key: _as_query(value) for key, value in options.items()}}
        params = {key: value for key, value in params.items() if value is not None}
        return _verified(self._request("GET", "/api/v1/capture", params=params))

    def render_url(
        self,
        url: str,
        *,
        key_id: str,
        secret: str,
        format: str = "png",
        expires: int | datetime | timedelta | None = None,
        cache_ttl: int | None = None,
        force: bool = False,
        **options: Any,
    ) -> str:
        """A signed render link on this client's server; see the module's `render_url`. The
        client's token plays no part: the link stands on the render key alone."""
        return render_url(
            str(self._http.base_url),
            url,
            key_id=key_id,
            secret=secret,
            format=format,
            expires=expires,
            cache_ttl=cache_ttl,
            force=force,
            **options,
        )
