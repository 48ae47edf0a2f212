"""The native API's account routes under /api/v1: who am I, users, API tokens, account groups,
organization settings and the audit log. Everything here acts on the caller's own organization;
creating organizations and changing rate limits is the operator's job (the CLI)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from snapshotd.http import openapi
from snapshotd.http.deps import AdminDep, PrincipalDep, ServicesDep
from snapshotd.rules import MAX_CACHE_TTL
from snapshotd.services import accounts
from snapshotd.services.records import AccountGroup, ApiToken, Organization, User
from snapshotd.timestamps import iso

router = APIRouter(prefix="/api/v1", tags=["accounts"])


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserCreate(Strict):
    email: str = Field(max_length=320)
    role: str = "viewer"


class UserUpdate(Strict):
    role: str


class TokenCreate(Strict):
    email: str = Field(max_length=320, description="An existing user of this organization.")
    name: str = Field("", max_length=200)
    expires_in_days: int | None = Field(None, ge=1, le=3650)


class GroupCreate(Strict):
    name: str = Field(max_length=200)


class OrgUpdate(Strict):
    retention_days: dict[str, int] | None = None
    cache_ttl: int | None = Field(
        None,
        ge=0,
        le=MAX_CACHE_TTL,
        strict=True,
        description="Seconds a capture is reused on the caching routes (0: never); null: the "
        "instance's SNAPSHOTD_CAPTURE_CACHE_TTL.",
    )


def user_body(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "role": user.role,
        "created_at": iso(user.created_at),
    }


def token_body(row: ApiToken) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "user": row.user.email,
        "role": row.user.role,
        "state": accounts.token_state(row),
        "created_at": iso(row.created_at),
        "last_used_at": iso(row.last_used_at),
        "expires_at": iso(row.expires_at),
        "revoked_at": iso(row.revoked_at),
    }


def group_body(group: AccountGroup) -> dict[str, Any]:
    return {"aid": str(group.id), "name": group.name, "default": group.is_default}


@router.get("/me", summary="The caller: organization, user, role, account groups")
def me(principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    org = services.org_settings.get(principal.org_id)
    groups = services.org_settings.account_groups(principal.org_id, principal.user_id)
    return {
        "organization": {"id": principal.org_id, "slug": org.slug},
        "user": {"id": principal.user_id, "email": principal.email, "role": principal.role},
        "token_id": principal.token_id,
        "account_groups": [group_body(group) for group in groups],
    }


@router.get("/users", summary="The organization's users")
def list_users(principal: AdminDep, services: ServicesDep) -> dict[str, Any]:
    return {"items": [user_body(u) for u in services.accounts.list_users(principal.org_id)]}


@router.post("/users", status_code=201, summary="Add a user", responses=openapi.answers(409))
def create_user(body: UserCreate, principal: AdminDep, services: ServicesDep) -> dict[str, Any]:
    user = services.accounts.add_user(
        principal.org_id, body.email, body.role, actor=principal.email
    )
    return user_body(user)


@router.patch("/users/{user_id}", summary="Change a user's role")
def update_user(
    user_id: str, body: UserUpdate, principal: AdminDep, services: ServicesDep
) -> dict[str, Any]:
    user = services.accounts.set_role(principal.org_id, user_id, body.role, actor=principal.email)
    services.principals.clear()  # this process stops honouring the old role at once
    return user_body(user)


@router.get("/tokens", summary="The organization's API tokens (never their secrets)")
def list_tokens(principal: AdminDep, services: ServicesDep) -> dict[str, Any]:
    rows = services.accounts.list_tokens(principal.org_id)
    return {"items": [token_body(row) for row in rows]}


@router.post("/tokens", status_code=201, summary="Create an API token; shown once")
def create_token(
    body: TokenCreate, principal: AdminDep, services: ServicesDep, response: Response
) -> dict[str, Any]:
    issued = services.accounts.new_token(
        principal.org_id,
        body.email,
        name=body.name,
        expires_in_days=body.expires_in_days,
        actor=principal.email,
    )
    response.headers["Cache-Control"] = "no-store"
    return {**token_body(issued.row), "token": issued.secret}


@router.delete("/tokens/{token_id}", status_code=204, summary="Revoke an API token")
def revoke_token(token_id: str, principal: AdminDep, services: ServicesDep) -> Response:
    services.accounts.revoke_token(principal.org_id, token_id, actor=principal.email)
    services.principals.clear()  # at once here; other processes within REMEMBER_SECONDS
    return Response(status_code=204)


@router.get("/account-groups", summary="Account groups (aid): yours, or all for an admin")
def list_groups(principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    only = None if principal.can("admin") else principal.user_id
    groups = services.org_settings.account_groups(principal.org_id, only)
    return {"items": [group_body(group) for group in groups]}


@router.post(
    "/account-groups",
    status_code=201,
    summary="Create an account group",
    responses=openapi.answers(409),
)
def create_group(body: GroupCreate, principal: AdminDep, services: ServicesDep) -> dict[str, Any]:
    group = services.accounts.new_account_group(principal.org_id, body.name, actor=principal.email)
    return group_body(group)


# The column is an INTEGER: 32 bits on PostgreSQL, 64 on SQLite. A larger number names no group,
# and the database would refuse to bind it.
AccountGroupId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.put(
    "/account-groups/{aid}/members/{user_id}", status_code=204, summary="Add a user to a group"
)
def add_member(
    aid: AccountGroupId, user_id: str, principal: AdminDep, services: ServicesDep
) -> Response:
    services.accounts.join_account_group(principal.org_id, aid, user_id, actor=principal.email)
    return Response(status_code=204)


@router.get("/org", summary="The organization and its retention settings")
def get_org(principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    return _org_body(services.org_settings.get(principal.org_id))


@router.patch(
    "/org", summary="Change the organization's retention per snapshot kind and its cache TTL"
)
def update_org(body: OrgUpdate, principal: AdminDep, services: ServicesDep) -> dict[str, Any]:
    settings = services.org_settings
    if body.retention_days is not None:
        settings.set_retention(principal.org_id, body.retention_days, actor=principal.email)
    if "cache_ttl" in body.model_fields_set:
        settings.set_cache_ttl(principal.org_id, body.cache_ttl, actor=principal.email)
    return _org_body(settings.get(principal.org_id))


def _org_body(org: Organization) -> dict[str, Any]:
    return {
        "id": org.id,
        "slug": org.slug,
        "name": org.name,
        "retention_days": org.retention_days,
        "rate_limits": org.rate_limits,
        "cache_ttl": org.cache_ttl,
        "created_at": iso(org.created_at),
    }


@router.get("/audit", summary="The audit log, newest first")
def list_audit(
    principal: AdminDep,
    services: ServicesDep,
    action: str | None = None,
    target_id: str | None = None,
    actor: str | None = None,
    since: openapi.Instant = None,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    page = services.audit.query(
        principal.org_id,
        action=action,
        target_id=target_id,
        actor=actor,
        since=since,
        cursor=cursor,
        limit=limit,
    )
    return {
        "items": [
            {
                "id": event.id,
                "at": iso(event.at),
                "actor": event.actor,
                "action": event.action,
                "target_type": event.target_type,
                "target_id": event.target_id,
                "detail": event.detail,
            }
            for event in page.items
        ],
        "next_cursor": page.next_cursor,
    }
