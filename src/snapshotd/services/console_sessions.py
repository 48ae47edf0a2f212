"""Web console sessions: a signed-in browser holds a random secret in a cookie; the database keeps
only its SHA-256, the API token it was opened with, and an absolute expiry.

A session is checked against its token on every request (one joined query), so revoking the token,
its expiry, or a change of the user's role takes effect on the console's next request. Sessions are
not extended by use: `life` after sign-in (SNAPSHOTD_CONSOLE_SESSION_HOURS) the visitor signs in
again.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from sqlalchemy import bindparam, delete, select

from snapshotd.services.accounts import Principal
from snapshotd.store.db import Database
from snapshotd.store.models import ApiToken, ConsoleSession, User, utcnow

_SECRET_BYTES = 32

_LOOKUP = (
    select(
        ConsoleSession.expires_at,
        ApiToken.id.label("token_id"),
        ApiToken.org_id,
        ApiToken.expires_at.label("token_expires_at"),
        ApiToken.revoked_at,
        User.id.label("user_id"),
        User.email,
        User.role,
    )
    .join(ApiToken, ApiToken.id == ConsoleSession.token_id)
    .join(User, User.id == ApiToken.user_id)
    .where(ConsoleSession.id == bindparam("digest"))
)


def session_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def csrf_token(secret: str) -> str:
    """The token every console form carries: derived from the session's secret, which only the
    visitor's browser holds, so another site can neither read nor compute it."""
    return hmac.new(secret.encode(), b"snapshotd console form", hashlib.sha256).hexdigest()


def csrf_matches(secret: str, presented: str) -> bool:
    return hmac.compare_digest(csrf_token(secret).encode(), presented.encode())


class ConsoleSessions:
    def __init__(self, db: Database) -> None:
        self.db = db

    def open_session(self, principal: Principal, life: timedelta) -> str:
        """A new session for a signed-in principal; returns the secret for the cookie. Expired
        sessions of every visitor are removed on the way, which keeps the table small."""
        secret = secrets.token_urlsafe(_SECRET_BYTES)
        now = utcnow()
        expires = now + life
        if principal.token_expires_at is not None:
            expires = min(expires, principal.token_expires_at)
        with self.db.session() as session:
            session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at <= now))
            session.add(
                ConsoleSession(
                    id=session_digest(secret),
                    org_id=principal.org_id,
                    token_id=principal.token_id,
                    created_at=now,
                    expires_at=expires,
                )
            )
        return secret

    def principal_for(self, secret: str) -> Principal | None:
        """The principal behind a live session; None when the session is unknown or expired, or
        its token was revoked or expired."""
        if not secret or len(secret) > 100:
            return None
        with self.db.engine.connect() as connection:
            row = connection.execute(_LOOKUP, {"digest": session_digest(secret)}).first()
        now = utcnow()
        if row is None or row.expires_at <= now or row.revoked_at is not None:
            return None
        if row.token_expires_at is not None and row.token_expires_at <= now:
            return None
        return Principal(
            row.org_id, row.user_id, row.email, row.role, row.token_id, row.token_expires_at
        )

    def close_session(self, secret: str) -> None:
        with self.db.session() as session:
            digest = session_digest(secret)
            session.execute(delete(ConsoleSession).where(ConsoleSession.id == digest))
