"""Rate limits.

Snapshot creation is limited per organization and per surface with a sliding window counted in the
database, so every API process shares one exact count: on PostgreSQL a transaction-scoped advisory
lock serializes the check-and-insert of one organization's bucket; on SQLite the first statement of
the check is a write (pruning old events), which takes the database's write lock before anything
is counted. Either way two concurrent requests cannot both take the last slot.

The general per-token request limit (and the limit on failed look-ups per client address) only
protects a process from floods, so it is a token bucket in that process's memory: cheap enough to
run on every request, approximate across processes by design.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from snapshotd.errors import RateLimited
from snapshotd.rules import Limit
from snapshotd.store.db import on_postgres
from snapshotd.store.models import Organization, RateEvent, utcnow

# The seeds' documented defaults; every other surface falls back to `native`.
DEFAULT_LIMITS = {
    "native": "600/60",
    "thousandeyes_v7": "5/300",
    "thousandeyes_v6": "10/3600",
}


@dataclass(frozen=True)
class Decision:
    policy: str
    limit: Limit
    remaining: int
    reset: int  # seconds until a slot frees up (0 when one is free now)

    def headers(self) -> dict[str, str]:
        """The IETF httpapi RateLimit-Policy / RateLimit structured-field headers."""
        name = f'"{self.policy}"'
        return {
            "RateLimit-Policy": f"{name};q={self.limit.count};w={self.limit.seconds}",
            "RateLimit": f"{name};r={self.remaining};t={self.reset}",
        }


def _lock_key(org_id: str, bucket: str) -> int:
    digest = hashlib.sha256(f"{org_id}\0{bucket}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class CreationLimits:
    """The database-counted sliding window on snapshot creation."""

    def __init__(self, configured: dict[str, str]) -> None:
        merged = {**DEFAULT_LIMITS, **configured}
        self.defaults = {bucket: Limit.parse(value) for bucket, value in merged.items()}

    def limit_for(self, org: Organization | None, bucket: str) -> Limit | None:
        overrides = org.rate_limits if org is not None else {}
        if bucket in overrides:
            return Limit.parse(overrides[bucket])
        if bucket in self.defaults:
            return self.defaults[bucket]
        if "native" in overrides:
            return Limit.parse(overrides["native"])
        return self.defaults.get("native")

    def take(self, session: Session, org_id: str, bucket: str) -> Decision | None:
        """Counts one creation in the caller's transaction, or raises RateLimited. The event is
        rolled back with the transaction if the creation fails for another reason."""
        limit = self.limit_for(session.get(Organization, org_id), bucket)
        if limit is None:
            return None
        now = utcnow()
        start = now - timedelta(seconds=limit.seconds)
        key = (RateEvent.org_id == org_id, RateEvent.bucket == bucket)
        if on_postgres(session):
            lock = {"key": _lock_key(org_id, bucket)}
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), lock)
        # A write first: on SQLite it takes the write lock before the count below.
        session.execute(delete(RateEvent).where(*key, RateEvent.at <= start))
        used = session.scalar(select(func.count()).select_from(RateEvent).where(*key)) or 0
        if used >= limit.count:
            freeing = session.scalar(
                select(RateEvent.at)
                .where(*key)
                .order_by(RateEvent.at)
                .offset(used - limit.count)
                .limit(1)
            )
            wait = (freeing + timedelta(seconds=limit.seconds) - now) if freeing else timedelta()
            # An event a concurrent request wrote after this one read the clock can end a hair
            # past the window; a wait is never longer than the window itself.
            seconds = min(limit.seconds, math.ceil(wait.total_seconds()))
            decision = Decision(bucket, limit, 0, max(1, seconds))
            raise RateLimited(
                f"rate limit reached: {limit.count} snapshots per {limit.seconds} s for this "
                f"organization on this API; try again in {decision.reset} s",
                decision,
            )
        session.add(RateEvent(org_id=org_id, bucket=bucket, at=now))
        return Decision(bucket, limit, limit.count - used - 1, 0)


class TokenBuckets:
    """In-memory token buckets keyed by any string (a token id, a client address)."""

    MAX_KEYS = 50_000

    def __init__(self, limit: int | Limit | None, *, policy: str) -> None:
        """`limit` is a Limit, or requests per minute (0 or None: no limit)."""
        if isinstance(limit, int):
            limit = Limit(limit, 60) if limit > 0 else None
        self.limit = limit
        self.policy = policy
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        """Raises RateLimited when `key` has nothing left, without taking anything."""
        self.take(key, cost=0.0)

    def take(self, key: str, cost: float = 1.0) -> Decision | None:
        """Takes `cost` from `key`'s bucket or raises RateLimited."""
        if self.limit is None:
            return None
        rate = self.limit.count / self.limit.seconds
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.limit.count), now))
            tokens = min(float(self.limit.count), tokens + (now - last) * rate)
            if tokens < max(cost, 1.0):
                self._buckets[key] = (tokens, now)
                reset = max(1, math.ceil((max(cost, 1.0) - tokens) / rate))
                decision = Decision(self.policy, self.limit, 0, reset)
                raise RateLimited(f"too many requests; try again in {reset} s", decision)
            self._buckets[key] = (tokens - cost, now)
            if len(self._buckets) > self.MAX_KEYS:
                self._forget_idle(now, rate)
        return Decision(self.policy, self.limit, int(tokens - cost), 0)

    def _forget_idle(self, now: float, rate: float) -> None:
        assert self.limit is not None
        full = [
            key
            for key, (tokens, last) in self._buckets.items()
            if tokens + (now - last) * rate >= self.limit.count
        ]
        for key in full:
            del self._buckets[key]
