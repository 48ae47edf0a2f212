"""The capture cache: a request that matches a recent successful capture of the same organization
is answered with that snapshot instead of running Chromium again.

A capture made through a caching route carries a cache key, the SHA-256 of its normalized URL and
options. A request looks for a snapshot with its key that succeeded within its TTL, or one still
running (which it then waits for). When there is none it creates the capture; a unique index over
the keys of running captures (`store/models.py`) makes the database refuse a second one, so
identical requests in any number of API processes coalesce into one capture: the refused ones look
again and find the running one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import case, or_, select
from sqlalchemy.orm import Session, selectinload

from snapshotd.config import Settings
from snapshotd.errors import BadRequest
from snapshotd.rules import MAX_CACHE_TTL
from snapshotd.services.capture_request import TRUE_WORDS, CaptureRequest
from snapshotd.services.liveness import live_clause
from snapshotd.store.models import Organization, Snapshot, utcnow

RUNNING = ("queued", "working")
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
            force = force.strip().lower() in TRUE_WORDS
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
        done = self.snapshot.completed_at
        if done is None:
            return 0
        left = self.ttl - (utcnow() - done).total_seconds()
        expires = self.snapshot.expires_at
        if expires is not None and not self.snapshot.legal_hold:
            left = min(left, (expires - utcnow()).total_seconds())
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
