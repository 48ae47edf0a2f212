"""`snapshotd ls`, `get` and `share`: everyday commands that talk to a snapshotd server through the
SDK. The server and token come from --server/--token or SNAPSHOTD_SERVER/SNAPSHOTD_TOKEN.

Tables are drawn for a terminal; when stdout is a pipe the same rows are printed tab-separated,
one a line, so that scripts can read them. `fail` and `settings_from_env` serve every command
module: a failure or a wrong setting ends a command as one line on stderr.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from snapshotd.config import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from snapshotd.client import Snapshot, SnapshotClient

USAGE = 2

ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="SNAPSHOTD_SERVER",
        help="A snapshotd server's base URL, e.g. http://127.0.0.1:8000.",
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="SNAPSHOTD_TOKEN",
        help="An API token for that server (prefer the environment variable).",
        show_default=False,
    ),
]


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def settings_from_env() -> Settings:
    """The settings from the environment; a wrong variable ends the command with its name."""
    try:
        return load_settings()
    except SettingsError as error:
        raise fail(str(error)) from None


@contextmanager
def connected(server: str | None, token: str | None) -> Iterator[SnapshotClient]:
    """An SDK client for the server, turning its errors into one line and exit status 1."""
    import httpx

    from snapshotd.client import ClientError, SnapshotClient

    if not server:
        raise fail("no server given: pass --server URL or set SNAPSHOTD_SERVER", USAGE)
    if not token:
        raise fail("no API token given: set SNAPSHOTD_TOKEN or pass --token", USAGE)
    try:
        with SnapshotClient(base_url=server.rstrip("/"), token=token) as client:
            yield client
    except ClientError as error:
        raise fail(str(error)) from None
    except httpx.HTTPError as error:
        raise fail(f"cannot reach {server}: {error}") from None


def show_rows(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A table on a terminal; tab-separated lines without the header otherwise."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        for row in rows:
            sys.stdout.write("\t".join(" ".join(cell.split()) for cell in row) + "\n")
        return
    table = Table(*headers, box=None, header_style="bold", pad_edge=False)
    for row in rows:
        table.add_row(*row)
    console.print(table)


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
            help="image, pdf, html, mhtml, manifest or diff (default: the image, else the PDF).",
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
        output = Path(f"{snapshot.id}.{suffix}")
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
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Make a share link for a snapshot and print its URL."""
    with connected(server, token) as client:
        link = client.share(snapshot_id, public=not private, expires_in=expires_in)
    sys.stdout.write(link.url + "\n")
    visibility = "public" if link.public else "private"
    typer.echo(f"{visibility} link, expires {_when(link.expires_at)} UTC", err=True)


def register(app: typer.Typer) -> None:
    app.command("ls")(ls)
    app.command("get")(get)
    app.command("share")(share)
