"""The `snapshotd` command, assembled from one module per command group. Each command is thin: it
builds settings and calls a service.
"""

from __future__ import annotations

import typer

from snapshotd.cli import accounts, capture, evidence, remote, render, server

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Point-in-time snapshots.")
capture.register(app)  # capture
remote.register(app)  # ls, get, share
accounts.register(app)  # audit, token, org, user, group
render.register(app)  # render-key, render-url
server.register(app)  # migrate, rebuild-rollups, serve, worker
evidence.register(app)  # verify, keygen, sweep
