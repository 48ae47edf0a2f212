"""The `snapshotd` command. Each command is thin: it builds settings and calls a service."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from snapshotd.cli import accounts as cli_accounts
from snapshotd.cli import capture as cli_capture
from snapshotd.cli import client as cli_client
from snapshotd.config import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from snapshotd.store.db import Database

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Point-in-time snapshots.")
cli_capture.register(app)
cli_client.register(app)
cli_accounts.register(app)


def _settings() -> Settings:
    return cli_client.settings_from_env()


def _setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def _check_signing_key(settings: Settings) -> None:
    """Fails at start, not at the first snapshot, when the manifest key cannot be had."""
    from snapshotd.services.manifests import load_or_create_key

    try:
        load_or_create_key(settings)
    except (RuntimeError, ValueError, OSError) as error:
        raise _fail(f"manifest signing key: {error}") from None


def _database(settings: Settings, *, wait: bool = False) -> Database:
    from snapshotd.store.db import open_database

    return open_database(settings.resolved_database_url, wait=wait)


@app.command()
def migrate() -> None:
    """Apply database migrations."""
    settings = _settings()
    _database(settings)
    typer.echo(f"database is up to date: {settings.resolved_database_url.split('@')[-1]}")


@app.command()
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
    from snapshotd.worker import Worker, WorkerThreads

    _setup_logging()
    settings = _settings()
    _check_signing_key(settings)
    if workers is not None:
        settings = settings.model_copy(update={"workers": workers})
    db = _database(settings, wait=True)
    blobs = make_blob_store(settings)
    if settings.workers:
        private_tmpdir()
    pool = [Worker(settings, db, blobs, name=str(i)) for i in range(settings.workers)]
    threads = WorkerThreads(pool)
    try:
        threads.start()
    except RuntimeError as error:
        threads.stop(timeout=5)
        raise _fail(str(error)) from None
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
            telemetry=pool[0].telemetry if pool else None,
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

    _setup_logging()
    settings = _settings()
    application = create_app(settings, db=Database.from_url(settings.resolved_database_url))
    _freeze_heap()
    return application


def _freeze_heap() -> None:
    """Hides what start-up built (hundreds of thousands of long-lived objects) from the garbage
    collector: a full collection then scans only what requests allocated, instead of stalling
    every request in flight for tens of milliseconds."""
    gc.collect()
    gc.freeze()


@app.command()
def worker() -> None:
    """Run a worker alone against the configured database (for scale-out)."""
    from snapshotd.engines.browser import SandboxUnavailable, private_tmpdir
    from snapshotd.store.blobs import make_blob_store
    from snapshotd.worker import Worker

    _setup_logging()
    settings = _settings()
    _check_signing_key(settings)
    db = _database(settings, wait=True)
    private_tmpdir()
    runner = Worker(settings, db, make_blob_store(settings))
    if settings.worker_metrics_address:
        try:
            runner.telemetry.serve(settings.worker_metrics_address)
        except OSError as error:
            address = settings.worker_metrics_address
            raise _fail(f"cannot serve metrics on {address}: {error.strerror}") from None

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, runner.request_stop)
        await runner.run()

    try:
        asyncio.run(main())
    except SandboxUnavailable as error:
        raise _fail(str(error)) from None


@app.command()
def verify(
    files: Annotated[list[Path], typer.Argument(help="Bundles downloaded from /bundle.")],
    key: Annotated[
        Path | None,
        typer.Option(help="The instance's public key PEM (/.well-known/snapshotd-manifest-key)."),
    ] = None,
) -> None:
    """Check snapshot bundles offline: the manifest's signature and every artifact's SHA-256.
    Exits 1 when any bundle does not verify."""
    from snapshotd.services import manifests

    public = manifests.load_public(key.read_bytes()) if key else None
    failed = False
    for path in files:
        verdict = manifests.verify_bundle(path.read_bytes(), public)
        typer.echo(f"{path}: {'OK' if verdict.ok else 'FAILED'}")
        for line in verdict.lines:
            typer.echo(f"  {line}")
        failed |= not verdict.ok
    if failed:
        raise typer.Exit(1)


@app.command()
def keygen(
    file: Annotated[Path, typer.Argument(help="Where to write the key (refused if it exists).")],
) -> None:
    """Create an Ed25519 manifest signing key (PEM, mode 0600) for SNAPSHOTD_MANIFEST_KEY_FILE,
    to copy to every machine of a deployment."""
    from snapshotd.services.manifests import create_key_file

    if not create_key_file(file):
        raise _fail(f"{file} already exists; it was left as it is")
    typer.echo(f"wrote {file}", err=True)


@app.command()
def sweep() -> None:
    """Delete expired snapshots, share links and unreferenced blobs now, looking at every blob
    for orphans (workers do this every sweep_interval_seconds, one shard of the blobs at a
    time)."""
    from snapshotd.services.retention import sweep as run_sweep
    from snapshotd.store.blobs import make_blob_store

    settings = _settings()
    store = make_blob_store(settings)
    report = run_sweep(settings, _database(settings), store, every_shard=True)
    typer.echo(str(report))
