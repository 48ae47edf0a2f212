"""`snapshotd serve`, `worker`, `migrate` and `rebuild-rollups`: running snapshotd on a machine of
the deployment."""

from __future__ import annotations

import asyncio
import gc
import signal
from typing import TYPE_CHECKING, Annotated

import typer

from snapshotd.cli.common import fail, open_db, settings_from_env, setup_logging
from snapshotd.config import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI


def check_signing_key(settings: Settings) -> None:
    """Fails at start, not at the first snapshot, when the manifest key cannot be had."""
    from snapshotd.services.manifests import load_or_create_key

    try:
        load_or_create_key(settings)
    except (RuntimeError, ValueError, OSError) as error:
        raise fail(f"manifest signing key: {error}") from None


def migrate() -> None:
    """Apply database migrations."""
    settings = settings_from_env()
    open_db(settings)
    typer.echo(f"database is up to date: {settings.resolved_database_url.split('@')[-1]}")


def rebuild_rollups() -> None:
    """Recompute the stored roll-ups of every metric series from its stored seconds (after
    restoring the measurements table on its own, say). Roll-ups older than the stored seconds
    are kept. Ingest may go on meanwhile."""
    from snapshotd.services.rollups import Rollups

    written = Rollups(open_db(settings_from_env())).rebuild()
    typer.echo(f"rebuilt {written} roll-up rows")


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int | None, typer.Option(help="In-process workers (0: API only).")] = None,
    processes: Annotated[
        int,
        typer.Option(
            min=1,
            help="API processes sharing the listening socket. With more than one, the "
            "in-process workers run in the parent process, which serves no requests.",
        ),
    ] = 1,
) -> None:
    """Run the API, the web pages and in-process workers."""
    import uvicorn

    from snapshotd.engines.browser import private_tmpdir
    from snapshotd.http.app import create_app
    from snapshotd.store.blobs import make_blob_store
    from snapshotd.telemetry import Telemetry
    from snapshotd.worker import Worker, WorkerThreads

    setup_logging()
    settings = settings_from_env()
    check_signing_key(settings)
    if workers is not None:
        settings = settings.model_copy(update={"workers": workers})
    db = open_db(settings, wait=True)
    blobs = make_blob_store(settings)
    if settings.workers:
        private_tmpdir()
    telemetry = Telemetry()  # one registry for the process: /metrics shows every worker's figures
    pool = [
        Worker(settings, db, blobs, telemetry=telemetry, name=str(i))
        for i in range(settings.workers)
    ]
    threads = WorkerThreads(pool)
    try:
        threads.start()
    except RuntimeError as error:
        threads.stop(timeout=5)
        raise fail(str(error)) from None
    try:
        if processes > 1:
            # uvicorn's supervisor starts the API processes from this import string, replaces any
            # that dies, and on SIGTERM stops them all before the workers here are stopped.
            target = f"{__name__}:{api_process_app.__name__}"
            uvicorn.run(
                target,
                factory=True,
                workers=processes,
                host=host,
                port=port,
                log_level="info",
                access_log=settings.access_log,
            )
            return
        application = create_app(
            settings,
            db=db,
            blobs=blobs,
            worker=pool[0] if pool else None,
            telemetry=telemetry,
            on_shutdown=threads.stop,
        )
        _freeze_heap()
        uvicorn.run(
            application, host=host, port=port, log_level="info", access_log=settings.access_log
        )
    finally:
        threads.stop()


def api_process_app() -> FastAPI:
    """The app of one of `serve --processes N`'s API processes: no worker of its own (the parent
    runs them), so sync captures go through the queue like any job. Settings come from the same
    environment as the parent's, and the parent has already migrated the database."""
    from snapshotd.http.app import create_app
    from snapshotd.store.db import Database

    setup_logging()
    settings = settings_from_env()
    application = create_app(settings, db=Database.from_url(settings.resolved_database_url))
    _freeze_heap()
    return application


def _freeze_heap() -> None:
    """Hides what start-up built (hundreds of thousands of long-lived objects) from the garbage
    collector: a full collection then scans only what requests allocated, instead of stalling
    every request in flight for tens of milliseconds."""
    gc.collect()
    gc.freeze()


def worker() -> None:
    """Run a worker alone against the configured database (for scale-out)."""
    from snapshotd.engines.browser import SandboxUnavailable, private_tmpdir
    from snapshotd.store.blobs import make_blob_store
    from snapshotd.worker import Worker

    setup_logging()
    settings = settings_from_env()
    check_signing_key(settings)
    db = open_db(settings, wait=True)
    private_tmpdir()
    runner = Worker(settings, db, make_blob_store(settings))
    if settings.worker_metrics_address:
        try:
            runner.telemetry.serve(settings.worker_metrics_address)
        except OSError as error:
            address = settings.worker_metrics_address
            raise fail(f"cannot serve metrics on {address}: {error.strerror}") from None

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, runner.request_stop)
        await runner.run()

    try:
        asyncio.run(main())
    except SandboxUnavailable as error:
        raise fail(str(error)) from None


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate)
    app.command("rebuild-rollups")(rebuild_rollups)
    app.command("serve")(serve)
    app.command("worker")(worker)
