"""`snapshotd render-key` and `snapshotd render-url`: the keys that sign render links, and the
links themselves.

`render-key` administers an organization's keys from a machine of the deployment, like `token`:
it calls the render keys service over the configured database, needs no API token, and what it
changes is attributed to the `operator`. `render-url` needs neither: it signs a link with the
SDK's builder, on the machine it runs on, for pages built by scripts or static site generators.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from typing import Annotated, Any

import typer

from snapshotd.cli import options
from snapshotd.cli.common import (
    OPERATOR,
    USAGE,
    ServerOption,
    fail,
    operator_services,
    org_id_of,
    server_url,
    show_rows,
)
from snapshotd.errors import SnapshotdError
from snapshotd.rules import MAX_CACHE_TTL

render_key_app = typer.Typer(no_args_is_help=True, help="Render keys, which sign render links.")

OrgOption = Annotated[str, typer.Option(help="Organization slug.")]


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else ""


@render_key_app.command("create")
def render_key_create(
    org: OrgOption,
    name: Annotated[str, typer.Option(help="What the key is for, e.g. the site.")] = "",
    rate_limit: Annotated[
        str | None,
        typer.Option(
            metavar="COUNT/SECONDS",
            help="Requests per API process (0: none; default: SNAPSHOTD_RENDER_KEY_RATE_LIMIT).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Create a render key; prints its id and its secret, which is not shown again."""
    services = operator_services()
    try:
        issued = services.render_keys.create(
            org_id_of(services, org), name=name, rate_limit=rate_limit, actor=OPERATOR
        )
    except SnapshotdError as error:
        raise fail(error.detail) from None
    sys.stdout.write(f"id\t{issued.row.id}\nsecret\t{issued.secret}\n")
    typer.echo(
        "the secret is not shown again: keep it where your links are signed "
        "(snapshotd render-url reads it from SNAPSHOTD_RENDER_SECRET)",
        err=True,
    )


@render_key_app.command("list")
def render_key_list(org: OrgOption) -> None:
    """List an organization's render keys, oldest first: id, name, state, created and last used
    (UTC), rate limit. Never their secrets."""
    from snapshotd.services.render_keys import key_state

    services = operator_services()
    try:
        rows = services.render_keys.list(org_id_of(services, org))
    except SnapshotdError as error:
        raise fail(error.detail) from None
    show_rows(
        ("id", "name", "state", "created", "last used", "rate limit"),
        [
            (
                row.id,
                row.name,
                key_state(row),
                _when(row.created_at),
                _when(row.last_used_at) or "never",
                row.rate_limit or "default",
            )
            for row in rows
        ],
    )


@render_key_app.command("revoke")
def render_key_revoke(
    key_id: Annotated[str, typer.Argument(metavar="KEY_ID")], org: OrgOption
) -> None:
    """Revoke a render key: its links answer 403 on every API process within 2 seconds."""
    services = operator_services()
    try:
        services.render_keys.revoke(org_id_of(services, org), key_id, actor=OPERATOR)
    except SnapshotdError as error:
        raise fail(error.detail) from None
    typer.echo(f"revoked {key_id}", err=True)


def render_url(
    url: Annotated[str, typer.Argument(metavar="URL", help="The page to show.")],
    key_id: Annotated[
        str | None,
        typer.Option(
            envvar="SNAPSHOTD_RENDER_KEY_ID", help="The render key's id.", show_default=False
        ),
    ] = None,
    secret: Annotated[
        str | None,
        typer.Option(
            envvar="SNAPSHOTD_RENDER_SECRET",
            help="The render key's secret (prefer the environment variable).",
            show_default=False,
        ),
    ] = None,
    server: ServerOption = None,
    format: Annotated[str, typer.Option(help="png, jpeg, webp or pdf.")] = "png",
    expires_in: Annotated[
        int | None,
        typer.Option(min=1, help="Seconds until the link stops working.", show_default=False),
    ] = None,
    cache_ttl: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=MAX_CACHE_TTL,
            help="Reuse a capture up to this many seconds old (0: never; default: the "
            "organization's).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Capture anew on every request.")] = False,
    width: options.Width = None,
    height: options.Height = None,
    full_page: options.FullPage = False,
    selector: options.Selector = None,
    device: options.Device = None,
    wait_until: options.WaitUntil = None,
    delay_ms: options.DelayMs = None,
    timeout_ms: options.TimeoutMs = None,
    block_ads: options.BlockAds = False,
    block_trackers: options.BlockTrackers = False,
    consent: options.Consent = None,
    scroll_lazy: options.ScrollLazy = None,
    freeze_animations: options.FreezeAnimations = False,
    reduced_motion: options.ReducedMotion = False,
    forced_colors: options.ForcedColors = False,
    media: options.Media = None,
    color_scheme: options.ColorScheme = None,
    timezone: options.Timezone = None,
    locale: options.Locale = None,
    geolocation: options.Geolocation = None,
    fail_on_status: options.FailOnStatus = None,
    user_agent: options.UserAgent = None,
) -> None:
    """Print a signed render link to a capture of URL, for an `<img src>`. Built here without
    asking the server; options left out take the server's defaults."""
    from snapshotd.client import render_url as signed_link
    from snapshotd.services.capture_request import parse_request

    base = server_url(server)
    if not key_id:
        raise fail("no render key given: pass --key-id or set SNAPSHOTD_RENDER_KEY_ID", USAGE)
    if not secret:
        raise fail("no render key secret given: set SNAPSHOTD_RENDER_SECRET", USAGE)
    # A flag left off is the server's default already, so only the flags given travel.
    asked: dict[str, Any] = {
        "width": width,
        "height": height,
        "full_page": full_page or None,
        "selector": selector,
        "device": device,
        "wait_until": wait_until,
        "delay_ms": delay_ms,
        "timeout_ms": timeout_ms,
        "block_ads": block_ads or None,
        "block_trackers": block_trackers or None,
        "consent": consent,
        "scroll_lazy": scroll_lazy,
        "freeze_animations": freeze_animations or None,
        "reduced_motion": reduced_motion or None,
        "forced_colors": forced_colors or None,
        "media": media,
        "color_scheme": color_scheme,
        "timezone": timezone,
        "locale": locale,
        "geolocation": geolocation,
        "fail_on_status": fail_on_status,
        "user_agent": user_agent,
    }
    given = {name: value for name, value in asked.items() if value is not None}
    # Checked against the request schema every server shares, so that a link sure to be refused
    # is never printed; the ceilings and egress rules are the server's own, checked when opened.
    try:
        parse_request({"url": url, **given, "format": format})
    except SnapshotdError as error:
        raise fail(error.detail, USAGE) from None
    link = signed_link(
        base,
        url,
        key_id=key_id,
        secret=secret,
        format=format,
        expires=timedelta(seconds=expires_in) if expires_in else None,
        cache_ttl=cache_ttl,
        force=force,
        **given,
    )
    sys.stdout.write(link + "\n")


def register(app: typer.Typer) -> None:
    app.add_typer(render_key_app, name="render-key")
    app.command("render-url")(render_url)
