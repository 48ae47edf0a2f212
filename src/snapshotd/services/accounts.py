"""Organizations, account groups, users and API tokens, and turning credentials into a principal.

Roles are ordered: viewer < uploader < manager < admin. Each surface's permission words map onto
them in PERMISSIONS, and `Principal.require(permission)` is the one check every route uses.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.orm import Session

from snapshotd.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from snapshotd.services import audit
from snapshotd.store.db import Database
from snapshotd.store.models import AccountGroup, ApiToken, Membership, Organization, User, utcnow

ROLES = ("viewer", "uploader", "manager", "admin")

# Permission word → the least role that holds it. Clickwrap's view/upload/manage, ThousandEyes'
# "Create snapshot shares" (share) and its rule that regular users (viewers) cannot POST, and
# Librato's read-only vs full-access tokens (view / upload) all land here.
PERMISSIONS = {
    "view": "viewer",
    "upload": "uploader",
    "share": "uploader",
    "manage": "manager",
    "admin": "admin",
}

TOKEN_PREFIX = "snap_"
DENIED = "authentication failed: send a valid API token"
_LAST_USED_GRANULARITY = timedelta(seconds=60)
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


@dataclass(frozen=True)
class Principal:
    org_id: str
    user_id: str
    email: str
    role: str
    token_id: str
    token_expires_at: datetime | None = None

    def can(self, permission: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(PERMISSIONS[permission])

    def require(self, permission: str) -> None:
        if not self.can(permission):
            needed = PERMISSIONS[permission]
            raise Forbidden(f"this action needs the {needed} role; your token has {self.role}")


def new_webhook_secret() -> str:
    """Standard Webhooks form: `whsec_` then the base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# -- organizations and account groups -------------------------------------------------------------


def ensure_org(session: Session, slug: str, *, name: str = "") -> Organization:
    if not _SLUG.match(slug):
        raise BadRequest("an organization slug is lower-case letters, digits and dashes")
    org = session.scalar(select(Organization).where(Organization.slug == slug))
    if org is None:
        org = Organization(
            slug=slug,
            name=name or slug,
            webhook_secret=new_webhook_secret(),
            signing_key=secrets.token_urlsafe(32),
            retention_days={},
            rate_limits={},
        )
        session.add(org)
        session.flush()
        session.add(AccountGroup(org_id=org.id, name="Default", is_default=True))
        session.flush()
    return org


def find_org(session: Session, slug: str) -> Organization:
    org = session.scalar(select(Organization).where(Organization.slug == slug))
    if org is None:
        raise NotFound(f"no organization {slug!r}")
    return org


def create_account_group(session: Session, org_id: str, name: str) -> AccountGroup:
    name = name.strip()
    if not name or len(name) > 200:
        raise BadRequest("an account group needs a name of 1 to 200 characters", field="name")
    taken = session.scalar(
        select(AccountGroup).where(AccountGroup.org_id == org_id, AccountGroup.name == name)
    )
    if taken is not None:
        raise Conflict(f"account group {name!r} already exists")
    group = AccountGroup(org_id=org_id, name=name, is_default=False)
    session.add(group)
    session.flush()
    return group


def account_groups(session: Session, org_id: str, user_id: str | None = None) -> list[AccountGroup]:
    """The organization's groups, or only those `user_id` belongs to."""
    statement = select(AccountGroup).where(AccountGroup.org_id == org_id)
    if user_id is not None:
        statement = statement.join(
            Membership, Membership.account_group_id == AccountGroup.id
        ).where(Membership.user_id == user_id)
    return list(session.scalars(statement.order_by(AccountGroup.id)))


def add_member(session: Session, org_id: str, group_id: int, user_id: str) -> None:
    group = session.get(AccountGroup, group_id)
    user = session.get(User, user_id)
    if group is None or group.org_id != org_id:
        raise NotFound(f"no account group {group_id}")
    if user is None or user.org_id != org_id:
        raise NotFound(f"no user {user_id}")
    if session.get(Membership, (group_id, user_id)) is None:
        session.add(Membership(account_group_id=group_id, user_id=user_id))
        session.flush()


# -- users ----------------------------------------------------------------------------------------


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise BadRequest(f"role must be one of {', '.join(ROLES)}", field="role")


def user_by_email(session: Session, org_id: str, email: str) -> User | None:
    normalized = email.strip().lower()
    return session.scalar(select(User).where(User.org_id == org_id, User.email == normalized))


def ensure_user(session: Session, org: Organization, email: str, role: str) -> User:
    """Creates the user in the organization's default group, or updates its role."""
    _check_role(role)
    email = email.strip().lower()
    if "@" not in email or len(email) > 320:
        raise BadRequest("email must be an email address", field="email")
    user = user_by_email(session, org.id, email)
    if user is None:
        user = User(org_id=org.id, email=email, role=role)
        session.add(user)
        session.flush()
        for group in account_groups(session, org.id):
            if group.is_default:
                session.add(Membership(account_group_id=group.id, user_id=user.id))
        session.flush()
    else:
        user.role = role
    return user


# -- tokens ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedToken:
    """A new token: `secret` is shown once and never stored; `row` is what is kept."""

    secret: str
    row: ApiToken


def issue_token(
    session: Session,
    user: User,
    *,
    name: str = "",
    expires_in_days: int | None = None,
    actor: str,
) -> IssuedToken:
    if expires_in_days is not None and not 1 <= expires_in_days <= 3650:
        raise BadRequest("expires_in_days must be between 1 and 3650", field="expires_in_days")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    row = ApiToken(
        org_id=user.org_id,
        user=user,
        digest=token_digest(secret),
        name=name[:200],
        created_at=now,
        expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    session.add(row)
    session.flush()
    audit.record(session, user.org_id, actor, "created", "token", row.id, user=user.email)
    return IssuedToken(secret, row)


def token_state(row: ApiToken, now: datetime | None = None) -> str:
    return _state(row.revoked_at, row.expires_at, now or utcnow())


def _state(revoked_at: datetime | None, expires_at: datetime | None, now: datetime) -> str:
    if revoked_at is not None:
        return "revoked"
    if expires_at is not None and expires_at <= now:
        return "expired"
    return "active"


# -- authentication -------------------------------------------------------------------------------

# Every sign-in runs this, so it is one Core statement: no ORM objects, no organization join.
_SIGN_IN = (
    select(
        ApiToken.id,
        ApiToken.org_id,
        ApiToken.user_id,
        ApiToken.digest,
        ApiToken.expires_at,
        ApiToken.revoked_at,
        ApiToken.last_used_at,
        User.email,
        User.role,
    )
    .join(User, User.id == ApiToken.user_id)
    .where(ApiToken.digest == bindparam("digest"))
)


def authenticate(
    executor: Session | Connection, token: str, *, email: str | None = None
) -> Principal:
    """The same 401 for a missing, unknown, revoked or expired token, and for a right token sent
    with the wrong email (HTTP Basic), so none of them can be told apart."""
    denied = Unauthorized(DENIED)
    if not token or len(token) > 200:
        raise denied
    digest = token_digest(token)
    row = executor.execute(_SIGN_IN, {"digest": digest}).first()
    now = utcnow()
    if row is None or not hmac.compare_digest(row.digest, digest):
        raise denied
    if _state(row.revoked_at, row.expires_at, now) != "active":
        raise denied
    if email is not None and not hmac.compare_digest(
        email.strip().lower().encode(), row.email.encode()
    ):
        raise denied
    if row.last_used_at is None or now - row.last_used_at > _LAST_USED_GRANULARITY:
        touch = update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=now)
        executor.execute(touch)
    return Principal(row.org_id, row.user_id, row.email, row.role, row.id, row.expires_at)


# -- the operations front ends call ------------------------------------------------------------


class Accounts:
    def __init__(self, db: Database) -> None:
        self.db = db

    def new_account_group(self, org_id: str, name: str, *, actor: str) -> AccountGroup:
        with self.db.session() as session:
            group = create_account_group(session, org_id, name)
            audit.record(
                session, org_id, actor, "created", "account_group", str(group.id), name=name
            )
            return group

    def join_account_group(self, org_id: str, group_id: int, user_id: str, *, actor: str) -> None:
        with self.db.session() as session:
            add_member(session, org_id, group_id, user_id)
            audit.record(
                session, org_id, actor, "added", "account_group", str(group_id), user=user_id
            )

    def account_group_for(self, principal: Principal, aid: str | None) -> AccountGroup:
        """The context a request works in: `aid` when given (the user must belong to it), else
        the user's default group. A group the user is not in raises BadRequest naming `aid`,
        which is what ThousandEyes answers for an invalid `aid`; dialects render it in their own
        shape."""
        with self.db.session() as session:
            groups = account_groups(session, principal.org_id, principal.user_id)
            if aid is None or aid == "":
                default = [group for group in groups if group.is_default] or groups
                if not default:
                    raise BadRequest("this user belongs to no account group", field="aid")
                return default[0]
            for group in groups:
                if str(group.id) == aid.strip():
                    return group
        raise BadRequest(f"aid {aid!r} is not an account group this user belongs to", field="aid")

    def find_user(self, org_id: str, email: str) -> User:
        with self.db.session() as session:
            user = user_by_email(session, org_id, email)
        if user is None:
            raise NotFound(f"no user {email.strip().lower()} in this organization", field="email")
        return user

    def add_user(self, org_id: str, email: str, role: str, *, actor: str) -> User:
        with self.db.session() as session:
            org = session.get(Organization, org_id)
            if org is None:
                raise NotFound(f"no organization {org_id}")
            if user_by_email(session, org_id, email) is not None:
                raise Conflict(f"user {email.strip().lower()} already exists", field="email")
            user = ensure_user(session, org, email, role)
            audit.record(session, org_id, actor, "created", "user", user.id, role=role)
            return user

    def set_role(self, org_id: str, user_id: str, role: str, *, actor: str) -> User:
        _check_role(role)
        with self.db.session() as session:
            user = session.get(User, user_id)
            if user is None or user.org_id != org_id:
                raise NotFound(f"no user {user_id}")
            if user.email == actor and role != "admin":
                raise BadRequest("an admin cannot lower their own role", field="role")
            user.role = role
            audit.record(session, org_id, actor, "updated", "user", user_id, role=role)
            return user

    def list_users(self, org_id: str) -> list[User]:
        with self.db.session() as session:
            return list(
                session.scalars(select(User).where(User.org_id == org_id).order_by(User.id))
            )

    def create_token(
        self,
        *,
        org: str,
        email: str,
        role: str,
        name: str = "",
        expires_in_days: int | None = None,
    ) -> str:
        """The operator's path (CLI): creates the org and user if missing; returns the new token."""
        with self.db.session() as session:
            organization = ensure_org(session, org)
            user = ensure_user(session, organization, email, role)
            issued = issue_token(
                session, user, name=name, expires_in_days=expires_in_days, actor=audit.SYSTEM
            )
        return issued.secret

    def new_token(
        self,
        org_id: str,
        email: str,
        *,
        name: str = "",
        expires_in_days: int | None = None,
        actor: str,
    ) -> IssuedToken:
        """A token for an existing user of the organization."""
        with self.db.session() as session:
            user = user_by_email(session, org_id, email)
            if user is None:
                raise BadRequest(
                    f"no user {email.strip().lower()} in this organization; add the user first",
                    field="email",
                )
            return issue_token(
                session, user, name=name, expires_in_days=expires_in_days, actor=actor
            )

    def list_tokens(self, org_id: str) -> list[ApiToken]:
        with self.db.session() as session:
            statement = select(ApiToken).where(ApiToken.org_id == org_id).order_by(ApiToken.id)
            return list(session.scalars(statement))

    def revoke_token(self, org_id: str, token_id: str, *, actor: str) -> ApiToken:
        """Revocation is a timestamp read at every sign-in; API processes remember a signed-in token
        for at most 2 seconds (services/principals.py), so it holds on every process within that."""
        with self.db.session() as session:
            row = session.get(ApiToken, token_id)
            if row is None or row.org_id != org_id:
                raise NotFound(f"no token {token_id}")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                audit.record(session, org_id, actor, "revoked", "token", token_id)
            return row

    def sign_in(self, token: str, *, email: str | None = None) -> Principal:
        """`authenticate` on a bare connection: a Session's bookkeeping would cost more than the
        query itself."""
        with self.db.engine.begin() as connection:
            return authenticate(connection, token, email=email)
