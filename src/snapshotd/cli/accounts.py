"""`snapshotd org`, `user`, `token`, `group` and `audit`: administering organizations from a
machine of the deployment. They call the same services as the API, over the configured database,
and need no API token, which is how the first admin token comes to exist; what they change is
attributed to the `operator`.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from snapshotd.cli.common import OPERATOR, fail, operator_services, org_id_of
from snapshotd.errors import SnapshotdError
from snapshotd.rules import MAX_CACHE_TTL

token_app = typer.Typer(no_args_is_help=True, help="API tokens.")
org_app = typer.Typer(no_args_is_help=True, help="Organizations.")
user_app = typer.Typer(no_args_is_help=True, help="Users.")
group_app = typer.Typer(no_args_is_help=True, help="Account groups (ThousandEyes aid).")


def _pairs(values: list[str], what: str) -> dict[str, str]:
    from snapshotd.rules import split_pairs

    try:
        return split_pairs(",".join(values))
    except SnapshotdError as error:
        raise fail(f"{what}: {error.detail}") from None


@org_app.command("create")
def org_create(
    slug: Annotated[str, typer.Argument(help="Lower-case letters, digits and dashes.")],
    name: Annotated[str, typer.Option(help="Display name.")] = "",
) -> None:
    """Create an organization (with its default account group)."""
    try:
        org = operator_services().org_settings.ensure(slug, name=name)
    except SnapshotdError as error:
        raise fail(error.detail) from None
    typer.echo(org.id)


@org_app.command("set")
def org_set(
    slug: str,
    retention: Annotated[
        list[str] | None, typer.Option(help="KIND=DAYS, e.g. page=90 (repeatable).")
    ] = None,
    rate_limit: Annotated[
        list[str] | None,
        typer.Option(help="SURFACE=COUNT/SECONDS, e.g. thousandeyes_v7=10/300 (repeatable)."),
    ] = None,
    cache_ttl: Annotated[
        str | None,
        typer.Option(
            help="Seconds a capture is reused on the caching routes (0: never; 'default': the "
            "instance's SNAPSHOTD_CAPTURE_CACHE_TTL).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Change an organization's retention per kind, snapshot-creation rate limits and capture
    cache TTL. All are checked before any is saved, so a wrong one changes nothing."""
    from snapshotd.rules import rate_limits, retention_days

    days = _pairs(retention or [], "--retention")
    if not all(value.isascii() and value.isdigit() for value in days.values()):
        raise fail("--retention days must be whole numbers")
    limits = _pairs(rate_limit or [], "--rate-limit")
    ttl = _cache_ttl(cache_ttl)
    services = operator_services()
    try:
        retention_days({kind: int(value) for kind, value in days.items()})
        rate_limits(limits)
        org_id = org_id_of(services, slug)
        if days:
            services.org_settings.set_retention(
                org_id, {kind: int(value) for kind, value in days.items()}, actor=OPERATOR
            )
        if limits:
            services.org_settings.set_rate_limits(org_id, limits, actor=OPERATOR)
        if cache_ttl is not None:
            services.org_settings.set_cache_ttl(org_id, ttl, actor=OPERATOR)
    except SnapshotdError as error:
        raise fail(error.detail) from None


def _cache_ttl(value: str | None) -> int | None:
    """--cache-ttl's seconds; None for 'default' (or when not given)."""
    if value is None or value.strip().lower() == "default":
        return None
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_CACHE_TTL:
        raise fail(f"--cache-ttl is seconds from 0 to {MAX_CACHE_TTL}, or 'default'")
    return int(text)


@user_app.command("create")
def user_create(
    org: Annotated[str, typer.Option(help="Organization slug.")],
    email: Annotated[str, typer.Option(help="The user's email.")],
    role: Annotated[str, typer.Option(help="viewer, uploader, manager or admin.")] = "viewer",
) -> None:
    """Add a user to an organization; prints the user id."""
    services = operator_services()
    try:
        user = services.accounts.add_user(org_id_of(services, org), email, role, actor=OPERATOR)
    except SnapshotdError as error:
        raise fail(error.detail) from None
    typer.echo(user.id)


@token_app.command("create")
def token_create(
    org: Annotated[str, typer.Option(help="Organization slug (created if missing).")],
    email: Annotated[str, typer.Option(help="User email (created if missing).")],
    role: Annotated[str, typer.Option(help="viewer, uploader, manager or admin.")] = "admin",
    name: Annotated[str, typer.Option(help="A label for the token.")] = "",
    expires_in_days: Annotated[
        int | None, typer.Option(help="Days until the token stops working.")
    ] = None,
) -> None:
    """Create an API token; prints only the token, which is never stored or shown again."""
    try:
        token = operator_services().accounts.create_token(
            org=org,
            email=email,
            role=role,
            name=name,
            expires_in_days=expires_in_days,
        )
    except SnapshotdError as error:
        raise fail(error.detail) from None
    sys.stdout.write(token + "\n")


@token_app.command("list")
def token_list(org: Annotated[str, typer.Option(help="Organization slug.")]) -> None:
    """List an organization's tokens (id, state, user, name, last use); never their secrets."""
    from snapshotd.services.accounts import token_state

    services = operator_services()
    try:
        rows = services.accounts.list_tokens(org_id_of(services, org))
    except SnapshotdError as error:
        raise fail(error.detail) from None
    for row in rows:
        used = row.last_used_at.isoformat(timespec="seconds") if row.last_used_at else "never"
        state = token_state(row)
        typer.echo(f"{row.id}\t{state}\t{row.user.email}\t{row.user.role}\t{row.name}\t{used}")


@token_app.command("revoke")
def token_revoke(
    token_id: str, org: Annotated[str, typer.Option(help="Organization slug.")]
) -> None:
    """Revoke a token by id; every API process refuses it within 2 seconds."""
    services = operator_services()
    try:
        services.accounts.revoke_token(org_id_of(services, org), token_id, actor=OPERATOR)
    except SnapshotdError as error:
        raise fail(error.detail) from None
    typer.echo(f"revoked {token_id}", err=True)


@group_app.command("create")
def group_create(
    org: Annotated[str, typer.Option(help="Organization slug.")],
    name: Annotated[str, typer.Option(help="Group name.")],
) -> None:
    """Create an account group; prints its aid."""
    services = operator_services()
    try:
        group = services.accounts.new_account_group(org_id_of(services, org), name, actor=OPERATOR)
    except SnapshotdError as error:
        raise fail(error.detail) from None
    typer.echo(str(group.id))


@group_app.command("add")
def group_add(
    org: Annotated[str, typer.Option(help="Organization slug.")],
    aid: Annotated[int, typer.Option(help="The account group id.")],
    email: Annotated[str, typer.Option(help="The user to add.")],
) -> None:
    """Add a user to an account group."""
    services = operator_services()
    try:
        org_id = org_id_of(services, org)
        user = services.accounts.find_user(org_id, email)
        services.accounts.join_account_group(org_id, aid, user.id, actor=OPERATOR)
    except SnapshotdError as error:
        raise fail(error.detail) from None


def audit(
    org: Annotated[str, typer.Option(help="Organization slug.")],
    action: Annotated[str | None, typer.Option(help="Only this action.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Newest entries to show.")] = 50,
) -> None:
    """Print an organization's audit log, newest first."""
    services = operator_services()
    try:
        page = services.audit.query(org_id_of(services, org), action=action, limit=limit)
    except SnapshotdError as error:
        raise fail(error.detail) from None
    for event in page.items:
        when = event.at.isoformat(timespec="seconds")
        detail = " ".join(f"{k}={v}" for k, v in event.detail.items())
        typer.echo(
            f"{when}\t{event.actor}\t{event.action}\t{event.target_type}\t{event.target_id}"
            f"\t{detail}"
        )


def register(app: typer.Typer) -> None:
    app.command("audit")(audit)
    app.add_typer(token_app, name="token")
    app.add_typer(org_app, name="org")
    app.add_typer(user_app, name="user")
    app.add_typer(group_app, name="group")
