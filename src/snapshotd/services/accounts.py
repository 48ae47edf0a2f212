"""Organizations, users and API tokens, and turning a presented token into a principal."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from snapshotd.errors import BadRequest, Forbidden, Unauthorized
from snapshotd.store.db import Database
from snapshotd.store.models import ApiToken, Organization, User, utcnow

ROLES = ("viewer", "uploader", "manager", "admin")
TOKEN_PREFIX = "snap_"
_LAST_USED_GRANULARITY = timedelta(seconds=60)
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


@dataclass(frozen=True)
class Principal:
    org_id: str
    user_id: str
    email: str
    role: str
    token_id: str

    def require(self, role: str) -> None:
        if ROLES.index(self.role) < ROLES.index(role):
            raise Forbidden(f"this action needs the {role} role; your token has {self.role}")


def new_webhook_secret() -> str:
    """Standard Webhooks form: `whsec_` then the base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def ensure_org(session: Session, slug: str) -> Organization:
    if not _SLUG.match(slug):
        raise BadRequest("an organization slug is lower-case letters, digits and dashes")
    org = session.scalar(select(Organization).where(Organization.slug == slug))
    if org is None:
        org = Organization(
            slug=slug,
            name=slug,
            webhook_secret=new_webhook_secret(),
            signing_key=secrets.token_urlsafe(32),
        )
        session.add(org)
        session.flush()
    return org


def ensure_user(session: Session, org: Organization, email: str, role: str) -> User:
    if role not in ROLES:
        raise BadRequest(f"role must be one of {', '.join(ROLES)}")
    email = email.strip().lower()
    if "@" not in email:
        raise BadRequest("email must be an email address")
    user = session.scalar(select(User).where(User.org_id == org.id, User.email == email))
    if user is None:
        user = User(org_id=org.id, email=email, role=role)
        session.add(user)
        session.flush()
    else:
        user.role = role
    return user


def create_token(db: Database, *, org: str, email: str, role: str, name: str = "") -> str:
    """Creates the org and user if missing; returns the new token, which is never stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with db.session() as session:
        organization = ensure_org(session, org)
        user = ensure_user(session, organization, email, role)
        session.add(
            ApiToken(org_id=organization.id, user_id=user.id, digest=token_digest(token), name=name)
        )
    return token


def authenticate(session: Session, token: str) -> Principal:
    """The same 401 for unknown, revoked and expired tokens, so none can be told apart."""
    denied = Unauthorized("invalid, revoked or expired API token")
    if not token or len(token) > 200:
        raise denied
    digest = token_digest(token)
    row = session.scalar(select(ApiToken).where(ApiToken.digest == digest))
    now = utcnow()
    if row is None or not hmac.compare_digest(row.digest, digest):
        raise denied
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        raise denied
    if row.last_used_at is None or now - row.last_used_at > _LAST_USED_GRANULARITY:
        row.last_used_at = now
    return Principal(row.org_id, row.user_id, row.user.email, row.user.role, row.id)
