"""What every command module shares: a failure ends a command as one line on stderr, settings come
from the environment, and the options and client of the commands that talk to a server.

Tables are drawn for a terminal; when stdout is a pipe the same rows are printed tab-separated,
one a line, so that scripts can read them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

import typer

from snapshotd.config import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from snapshotd.client import SnapshotClient
    from snapshotd.services.graph import Services
    from snapshotd.store.db import Database

USAGE = 2
# Who the audit log says made a change from a command run on a machine of the deployment.
OPERATOR = "operator"

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


def server_url(server: str | None) -> str:
    """The --server option's base URL, without a trailing slash; a missing or non-http one ends
    the command as a usage error."""
    if not server:
        raise fail("no server given: pass --server URL or set SNAPSHOTD_SERVER", USAGE)
    parts = urlsplit(server)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise fail(f"--server {server!r} is not an http:// or https:// URL", USAGE)
    return server.rstrip("/")


def plain_failure(error: BaseException) -> str | None:
    """What went wrong outside snapshotd, in one line: a database or blob store that cannot be
    reached, a full disk, a file or folder that cannot be read or written. None for anything
    else, which is a bug and keeps its traceback."""
    from snapshotd.store.outages import as_outage

    outage = as_outage(error)
    if outage is not None:
        return outage.summary
    if isinstance(error, OSError) and error.strerror:
        where = f": {error.filename}" if error.filename is not None else ""
        return f"{error.strerror}{where}"
    return None


@contextmanager
def connected(server: str | None, token: str | None) -> Iterator[SnapshotClient]:
    """An SDK client for the server, turning its errors into one line and exit status 1."""
    import httpx

    from snapshotd.client import ClientError, SnapshotClient

    base = server_url(server)
    if not token:
        raise fail("no API token given: set SNAPSHOTD_TOKEN or pass --token", USAGE)
    try:
        with SnapshotClient(base_url=base, token=token) as client:
            yield client
    except ClientError as error:
        raise fail(str(error)) from None
    except httpx.HTTPError as error:
        raise fail(f"cannot reach {base}: {error}") from None


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


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def operator_services() -> Services:
    """The services over the configured database, for the commands that administer
    organizations without an API token."""
    from snapshotd.services.graph import build_services

    settings = settings_from_env()
    return build_services(settings, db=open_db(settings))


def org_id_of(services: Services, slug: str) -> str:
    return services.org_settings.find(slug).id


def open_db(settings: Settings, *, wait: bool = False) -> Database:
    """The configured database, migrated; with `wait`, one not reachable yet is waited for."""
    from snapshotd.store.db import open_database

    return open_database(settings.resolved_database_url, wait=wait)
