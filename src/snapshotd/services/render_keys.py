"""Render keys: the secrets that sign render links (`/render/{key_id}/{format}?…&signature=`), so a
page can show a capture in an `<img>` without holding an API token.

An organization may have several live keys, so a key can be replaced without breaking the pages
that still use the old one: create the new key, move the pages over, revoke the old one. The
signature is the lowercase hex HMAC-SHA256, keyed by the key's secret, of the query string exactly
as sent up to `&signature=`. HMAC needs the secret to check a signature, so it is stored; it is
shown once, when the key is created, and never listed.

An API process remembers a key for REMEMBER_SECONDS after the database vouched for it (a key that
does not exist, too), so a link costs no key query on most requests; a revoked key therefore stops
working on every process within that bound, and at once on the one that revoked it. Each key has a
request budget per process (a token bucket, like an API token's), on top of the organization's
creation limit, which counts captures only.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote

from sqlalchemy import select, update

from snapshotd.config import Settings
from snapshotd.errors import Forbidden, InvalidValue, NotFound
from snapshotd.rules import Limit
from snapshotd.services import audit
from snapshotd.services.accounts import Principal
from snapshotd.services.ratelimit import Decision, TokenBuckets
from snapshotd.store.db import Database
from snapshotd.store.models import RenderKey, utcnow

SECRET_PREFIX = "rks_"
REMEMBER_SECONDS = 2.0
# How stale a key's `last_used_at` may get: it is written at most this often per process.
LAST_USED_EVERY = timedelta(minutes=1)
MAX_REMEMBERED = 10_000
REFUSED = "the render link's signature does not match a live render key"


def signature(secret: str, signed: bytes) -> str:
    """The lowercase hex HMAC-SHA256 of `signed` keyed by `secret`."""
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signed_link(base_url: str, key_id: str, secret: str, format: str, query: str) -> str:
    """A render link for an already encoded `query`, with its signature appended last."""
    path = f"/render/{quote(key_id, safe='')}/{format}"
    return f"{base_url.rstrip('/')}{path}?{query}&signature={signature(secret, query.encode())}"


def split_signed(query: bytes) -> tuple[bytes, str]:
    """A raw query string's signed part (everything before `&signature=`) and the signature;
    Forbidden when it has none."""
    signed, found, given = query.rpartition(b"&signature=")
    if not found or not given:
        raise Forbidden("a render link needs a signature: append &signature=HEX to the query")
    return signed, given.decode("latin-1")


def key_state(row: RenderKey) -> str:
    """ "live" or "revoked": a key has no expiry; a link's own `expires` bounds its life."""
    return "revoked" if row.revoked_at else "live"


@dataclass(frozen=True)
class IssuedKey:
    row: RenderKey
    secret: str


@dataclass(frozen=True)
class LiveKey:
    """What a process remembers of a live key."""

    id: str
    org_id: str
    secret: str
    limit: Limit | None

    def principal(self) -> Principal:
        """Who a render link's capture is made for: its organization, by this key."""
        return Principal(
            org_id=self.org_id,
            user_id="",
            email=f"render key {self.id}",
            role="uploader",
            token_id=self.id,
        )


class RenderKeys:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.db = db
        self.default_limit = Limit.parse(settings.render_key_rate_limit)
        self._remembered: dict[str, tuple[float, LiveKey | None]] = {}
        self._written: dict[str, float] = {}
        self._budgets: dict[Limit, TokenBuckets] = {}
        self._lock = threading.Lock()

    # -- managing keys --------------------------------------------------------------------------

    def create(
        self, org_id: str, *, name: str = "", rate_limit: str | None = None, actor: str
    ) -> IssuedKey:
        if rate_limit is not None:
            try:
                Limit.parse(rate_limit)
            except InvalidValue as error:
                raise InvalidValue(error.detail, field="rate_limit") from None
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        with self.db.session() as session:
            row = RenderKey(
                org_id=org_id, name=name, secret=secret, rate_limit=rate_limit, created_by=actor
            )
            session.add(row)
            session.flush()
            audit.record(session, org_id, actor, "created", "render_key", row.id, name=name)
            return IssuedKey(row, secret)

    def list(self, org_id: str) -> list[RenderKey]:
        """The organization's keys, revoked ones included, oldest first."""
        with self.db.session() as session:
            query = select(RenderKey).where(RenderKey.org_id == org_id).order_by(RenderKey.id)
            return list(session.scalars(query))

    def revoke(self, org_id: str, key_id: str, *, actor: str) -> RenderKey:
        with self.db.session() as session:
            row = session.get(RenderKey, key_id)
            if row is None or row.org_id != org_id:
                raise NotFound(f"no render key {key_id}")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                audit.record(session, org_id, actor, "revoked", "render_key", key_id)
        self._remembered.pop(key_id, None)
        return row

    # -- checking links ------------------------------------------------------------------------

    def forget(self) -> None:
        """Forgets every key this process remembers: the next link asks the database."""
        self._remembered.clear()

    def remembered(self, key_id: str) -> tuple[bool, LiveKey | None]:
        """(True, the key) when this process remembers the database's answer for `key_id` (None:
        no live key by that id), else (False, None) and `look_up` asks the database."""
        entry = self._remembered.get(key_id)
        if entry is None or time.monotonic() >= entry[0]:
            return False, None
        return True, entry[1]

    def look_up(self, key_id: str) -> LiveKey | None:
        """Asks the database for a live key, remembers the answer, and records the key's use."""
        with self.db.session() as session:
            row = session.get(RenderKey, key_id) if len(key_id) <= 40 else None
            live = None
            if row is not None and row.revoked_at is None:
                limit = Limit.parse(row.rate_limit) if row.rate_limit else self.default_limit
                live = LiveKey(row.id, row.org_id, row.secret, limit)
                now = time.monotonic()
                if now - self._written.get(row.id, -1e9) >= LAST_USED_EVERY.total_seconds():
                    self._written[row.id] = now
                    session.execute(
                        update(RenderKey)
                        .where(RenderKey.id == row.id)
                        .values(last_used_at=utcnow())
                    )
        if len(self._remembered) >= MAX_REMEMBERED:
            self._remembered.clear()  # forgetting is always safe: the next link asks again
        self._remembered[key_id] = (time.monotonic() + REMEMBER_SECONDS, live)
        return live

    def check(self, key: LiveKey | None, signed: bytes, given: str) -> LiveKey:
        """The key when `given` is its signature of `signed`, compared in constant time; else
        Forbidden, with the same words whatever was wrong."""
        if key is None:
            raise Forbidden(REFUSED)
        expected = signature(key.secret, signed).encode()
        if not hmac.compare_digest(expected, given.lower().encode("latin-1")):
            raise Forbidden(REFUSED)
        return key

    def take(self, key: LiveKey) -> Decision | None:
        """One request from the key's budget in this process, or RateLimited."""
        if key.limit is None:
            return None
        with self._lock:
            budget = self._budgets.get(key.limit)
            if budget is None:
                budget = self._budgets[key.limit] = TokenBuckets(key.limit, policy="render-key")
        return budget.take(key.id)
