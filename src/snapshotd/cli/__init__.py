"""The `snapshotd` command, assembled from one module per command group. Each command is thin: it
builds settings and calls a service. `main` is the console script: it runs `app`, and a failure of
something outside snapshotd (see `common.plain_failure`) ends the command as one line on stderr
with exit status 1 instead of a traceback.
"""

from __future__ import annotations

import typer

from snapshotd.cli import accounts, capture, evidence, remote, render, server
from snapshotd.cli.common import plain_failure

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Point-in-time snapshots.",
    rich_markup_mode="markdown",
)
capture.register(app)  # capture
remote.register(app)  # ls, get, share
accounts.register(app)  # audit, token, org, user, group
render.register(app)  # render-key, render-url
server.register(app)  # migrate, rebuild-rollups, serve, worker
evidence.register(app)  # verify, keygen, sweep


def main() -> None:
    try:
        app()
    except Exception as error:
        message = plain_failure(error)
        if message is None:
            raise
        typer.echo(f"error: {message}", err=True)
        raise SystemExit(1) from None
