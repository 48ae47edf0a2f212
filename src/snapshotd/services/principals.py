"""Principals an API process remembers, so that most requests cost no database round trip.

A principal is remembered for REMEMBER_SECONDS after the database vouched for it, because asking
on every request would cost a round trip and a worker thread each time: a revoked token, a changed
role or a removed user therefore holds on every process within that bound. Token expiry is checked
on every request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from snapshotd.services.accounts import Principal, token_digest
from snapshotd.store.models import utcnow

REMEMBER_SECONDS = 2.0


@dataclass(frozen=True)
class Credentials:
    token: str
    email: str | None = None


class PrincipalCache:
    """Principals the database vouched for less than `seconds` ago, by token digest and Basic
    email. Failures are never remembered (the miss budget meters those), nor are raw tokens."""

    MAX_ENTRIES = 10_000

    def __init__(self, seconds: float = REMEMBER_SECONDS) -> None:
        self.seconds = seconds
        self._entries: dict[tuple[str, str | None], tuple[float, Principal]] = {}

    @staticmethod
    def _key(presented: Credentials) -> tuple[str, str | None]:
        email = presented.email.strip().lower() if presented.email is not None else None
        return token_digest(presented.token), email

    def get(self, presented: Credentials) -> Principal | None:
        if not presented.token:
            return None
        key = self._key(presented)
        entry = self._entries.get(key)
        if entry is None:
            return None
        until, principal = entry
        expires = principal.token_expires_at
        if time.monotonic() >= until or (expires is not None and expires <= utcnow()):
            self._entries.pop(key, None)
            return None
        return principal

    def clear(self) -> None:
        self._entries.clear()

    def put(self, presented: Credentials, principal: Principal) -> None:
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries.clear()  # forgetting is always safe: the next request asks the database
        self._entries[self._key(presented)] = (time.monotonic() + self.seconds, principal)
