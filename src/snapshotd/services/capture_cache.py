"""The capture cache: a request that matches a recent successful capture of the same organization
is answered with that snapshot instead of running Chromium again.

A capture made through a caching route carries a cache key, the SHA-256 of its normalized URL and
options. A request looks for a snapshot with its key that succeeded within its TTL, or one still
running (which it then waits for). When there is none it creates the capture; a unique index over
the keys of running captures (`store/models/snapshots.py`) makes the database refuse a second one,
so identical requests in any number of API processes coalesce into one capture: the refused ones
look again and find the running one.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import bindparam, case, or_, select
from sqlalchemy.orm import Session, selectinload

from snapshotd.config import Settings
from snapshotd.errors import BadRequest
from snapshotd.rules import MAX_CACHE_TTL
from snapshotd.services.capture_request import CaptureRequest, flag
from snapshotd.services.liveness import is_live, live_clause
from snapshotd.services.snapshot_reads import ARTIFACT_FIELDS, ArtifactView
from snapshotd.store.db import Database
from snapshotd.store.models import Artifact, Organization, Snapshot, utcnow

RUNNING = ("queued", "working")


class Finished(Protocol):
    @property
    def completed_at(self) -> datetime | None: ...
    @property
    def expires_at(self) -> datetime | None: ...
    @property
    def legal_hold(self) -> bool: ...


DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class CacheAsk:
    """What a request asks of the cache: reuse a capture up to `ttl` seconds old (None: the
    organization's or the instance's default), or `force` a new one."""

    ttl: int | None = None
    force: bool = False

    @classmethod
    def from_text(cls, fields: dict[str, object]) -> CacheAsk:
        """Takes `cache_ttl` and `force` out of a query string's fields (see fields_from_text)."""
        ttl_text = str(fields.pop("cache_ttl", "") or "").strip()
        force = fields.pop("force", False)
        if isinstance(force, str):
            force = flag("force", force)
        return cls(ttl=parse_ttl(ttl_text) if ttl_text else None, force=bool(force))


@dataclass(frozen=True)
class Cached:
    """The snapshot a caching request got, and whether it came from the cache (a finished
    capture, or one already running that the request joined) or was created for it. `ttl` is
    the cache life the request asked for, in seconds."""

    snapshot: Snapshot
    cached: bool
    ttl: int

    @property
    def header(self) -> str:
        """The `X-Cache` header's value."""
        return "hit" if self.cached else "miss"

    def max_age(self) -> int:
        """Seconds left of the cache life of the snapshot (0 when it is still running)."""
        return cache_life(self.snapshot, self.ttl)


def cache_life(snapshot: Finished, ttl: int) -> int:
    """Seconds left before a capture stops answering requests with this TTL: never past the
    snapshot's own expiry, 0 for one not finished."""
    done = snapshot.completed_at
    if done is None:
        return 0
    now = utcnow()
    left = ttl - (now - done).total_seconds()
    if snapshot.expires_at is not None and not snapshot.legal_hold:
        left = min(left, (snapshot.expires_at - now).total_seconds())
    return max(0, int(left))


def parse_ttl(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_CACHE_TTL:
        raise BadRequest(
            f"cache_ttl is a whole number of seconds from 0 to {MAX_CACHE_TTL} (30 days)",
            field="cache_ttl",
        )
    return int(text)


def normalized_url(url: str) -> str:
    """The URL as the cache compares it: scheme and host in lower case, no default port, `/` for
    an empty path. The query and fragment are kept as they are: a page may read either."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host if port is None or port == DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    if parts.username is not None:
        netloc = f"{parts.netloc.rpartition('@')[0]}@{netloc}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, parts.fragment))


def cache_key(options: CaptureRequest) -> str:
    """The SHA-256 of the normalized URL and every option that differs from its default."""
    stored = options.model_dump(mode="json", exclude_defaults=True)
    stored["url"] = normalized_url(options.url)
    text = json.dumps(stored, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class CaptureCache:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def ttl(self, session: Session, org_id: str, ask: CacheAsk) -> int:
        """The request's TTL, else the organization's, else the instance's."""
        if ask.ttl is not None:
            return ask.ttl
        org = session.get(Organization, org_id)
        if org is not None and org.cache_ttl is not None:
            return org.cache_ttl
        return self.settings.capture_cache_ttl

    def find(self, session: Session, org_id: str, key: str, ttl: int) -> Snapshot | None:
        """A live capture with `key` that succeeded less than `ttl` seconds ago (the newest), else
        one still running; a finished one is preferred."""
        now = utcnow()
        fresh = (Snapshot.status == "success") & (
            Snapshot.completed_at >= now - timedelta(seconds=ttl)
        )
        return session.scalar(
            select(Snapshot)
            .where(
                Snapshot.org_id == org_id,
                Snapshot.cache_key == key,
                or_(fresh, Snapshot.status.in_(RUNNING)),
                live_clause(now),
            )
            .order_by(case((Snapshot.status == "success", 0), else_=1), Snapshot.id.desc())
            .limit(1)
            .options(selectinload(Snapshot.artifacts))
        )


# The hit of a render link, in one statement outside any transaction (Database.read): the newest
# successful capture with the key since the cutoff, joined to the artifact the link shows.
HIT = (
    select(
        Snapshot.id,
        Snapshot.completed_at,
        Snapshot.expires_at,
        Snapshot.legal_hold,
        *(getattr(Artifact, name) for name in ARTIFACT_FIELDS),
    )
    .join(Artifact, Artifact.snapshot_id == Snapshot.id)
    .where(
        Snapshot.org_id == bindparam("org_id"),
        Snapshot.cache_key == bindparam("key"),
        Snapshot.status == "success",
        Snapshot.completed_at >= bindparam("since"),
        Artifact.role == bindparam("role"),
    )
    .order_by(Snapshot.id.desc())
    .limit(1)
)


@dataclass(frozen=True, slots=True)
class CachedPicture:
    """A finished capture that answers a request, and the one artifact the request shows."""

    id: str
    completed_at: datetime | None
    expires_at: datetime | None
    legal_hold: bool
    artifact: ArtifactView
    ttl: int

    def max_age(self) -> int:
        return cache_life(self, self.ttl)


class CacheHits:
    """The capture cache's hits alone, for a render link answered in front of the framework
    (http/fast_render.py): one query, and the organization's TTL remembered for
    REMEMBER_SECONDS, so a change to it holds on every process within that bound."""

    REMEMBER_SECONDS = 2.0

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self._ttls: dict[str, tuple[float, int]] = {}

    async def find(
        self, org_id: str, options: CaptureRequest, ask: CacheAsk, role: str
    ) -> CachedPicture | None:
        """The organization's live, fresh capture matching `options` with its `role` artifact,
        or None (the full path then decides: a miss, a running capture, an error)."""
        if ask.force:
            return None
        if self.db.is_postgres:
            return await asyncio.to_thread(self._find, org_id, options, ask, role)
        return self._find(org_id, options, ask, role)  # a short local call on SQLite

    def _find(
        self, org_id: str, options: CaptureRequest, ask: CacheAsk, role: str
    ) -> CachedPicture | None:
        ttl = ask.ttl if ask.ttl is not None else self._org_ttl(org_id)
        if ttl <= 0:
            return None
        since = utcnow() - timedelta(seconds=ttl)
        params = {"org_id": org_id, "key": cache_key(options), "since": since, "role": role}
        rows = self.db.read(HIT, params)
        if not rows:
            return None
        snapshot_id, completed_at, expires_at, legal_hold, *artifact = tuple(rows[0])
        picture = CachedPicture(
            snapshot_id, completed_at, expires_at, legal_hold, ArtifactView(*artifact), ttl
        )
        return picture if is_live(picture) else None

    def _org_ttl(self, org_id: str) -> int:
        remembered = self._ttls.get(org_id)
        now = time.monotonic()
        if remembered is not None and now < remembered[0]:
            return remembered[1]
        with self.db.session() as session:
            ttl = CaptureCache(self.settings).ttl(session, org_id, CacheAsk())
        if len(self._ttls) > 10_000:
            self._ttls.clear()
        self._ttls[org_id] = (now + self.REMEMBER_SECONDS, ttl)
        return ttl
