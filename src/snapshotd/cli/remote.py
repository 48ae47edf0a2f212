"""`snapshotd ls`, `get` and `share`: everyday commands that talk to a snapshotd server through the
SDK. The server and token come from --server/--token or SNAPSHOTD_SERVER/SNAPSHOTD_TOKEN.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from snapshotd.cli.common import ServerOption, TokenOption, connected, fail, show_rows

# What `get --artifact` names the signed bundle (GET /api/v1/snapshots/{id}/bundle).
BUNDLE = "bundle"

if TYPE_CHECKING:
    from snapshotd.client import Snapshot


def _when(value: str | None) -> str:
    return value.replace("T", " ").removesuffix("Z")[:19] if value else ""


def ls(
    status: Annotated[
        str | None, typer.Option(help="queued, working, success or failed.", show_default=False)
    ] = None,
    kind: Annotated[
        str | None,
        typer.Option(help="page, chart, test_window or upload.", show_default=False),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 20,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """List recent snapshots on a server: id, kind, status, created (UTC) and URL."""
    with connected(server, token) as client:
        found = list(
            itertools.islice(client.list(status=status, kind=kind, limit=min(limit, 200)), limit)
        )
    show_rows(
        ("id", "kind", "status", "created", "url"),
        [(each.id, each.kind, each.status, _when(each.created_at), each.url) for each in found],
    )


def _main_role(snapshot: Snapshot) -> str:
    roles = [artifact["role"] for artifact in snapshot.artifacts]
    return next((role for role in ("image", "pdf") if role in roles), "image")


def get(
    snapshot_id: Annotated[str, typer.Argument(metavar="ID", help="The snapshot's id.")],
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="File to write, or - for stdout (default: ID.EXT here).",
            show_default=False,
        ),
    ] = None,
    artifact: Annotated[
        str | None,
        typer.Option(
            metavar="ROLE",
            help="image, pdf, html, har, certificate_chain, wacz, manifest, timestamp, diff, or "
            "bundle: all of them in the signed zip that snapshotd verify checks (default: the "
            "image, else the PDF).",
            show_default=False,
        ),
    ] = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Download a snapshot's artifact, checked against the SHA-256 the server announces."""
    with connected(server, token) as client:
        snapshot = client.get(snapshot_id)
        role = artifact or _main_role(snapshot)
        data = client.download(snapshot.id, role)
        described = next((a for a in snapshot.artifacts if a["role"] == role), {})
    if output is not None and str(output) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    if output is None:
        from snapshotd.services.manifests import extension

        suffix = extension(str(described.get("media_type", "")), default=role)
        output = Path(f"{snapshot.id}.{'zip' if role == BUNDLE else suffix}")
    try:
        output.write_bytes(data)
    except OSError as error:
        raise fail(f"cannot write {output}: {error.strerror or error}") from None
    typer.echo(f"wrote {output} ({len(data)} bytes, sha256 verified)", err=True)


def share(
    snapshot_id: Annotated[str, typer.Argument(metavar="ID", help="The snapshot's id.")],
    expires_in: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="SECONDS",
            help="Link lifetime (default and ceiling: the snapshot's own expiry).",
            show_default=False,
        ),
    ] = None,
    private: Annotated[
        bool, typer.Option("--private", help="Only signed-in members of the organization.")
    ] = False,
    evidence: Annotated[
        bool, typer.Option("--evidence", help="The link also serves the signed bundle.")
    ] = False,
    replay: Annotated[
        bool, typer.Option("--replay", help="The link also offers the archived page's replay.")
    ] = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Make a share link for a snapshot and print its URL."""
    with connected(server, token) as client:
        link = client.share(
            snapshot_id,
            public=not private,
            expires_in=expires_in,
            evidence=evidence,
            replay=replay,
        )
    sys.stdout.write(link.url + "\n")
    visibility = "public" if link.public else "private"
    switches = (("evidence", link.evidence), ("replay", link.replay))
    offers = "".join(f", with {name}" for name, on in switches if on)
    typer.echo(f"{visibility} link{offers}, expires {_when(link.expires_at)} UTC", err=True)


def register(app: typer.Typer) -> None:
    app.command("ls")(ls)
    app.command("get")(get)
    app.command("share")(share)
