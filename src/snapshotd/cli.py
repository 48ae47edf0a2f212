"""The `snapshotd` command. Each command is thin: it builds settings and calls a service."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from snapshotd.config import Settings
from snapshotd.errors import SnapshotdError

if TYPE_CHECKING:
    from snapshotd.store.db import Database

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Point-in-time snapshots.")
token_app = typer.Typer(no_args_is_help=True, help="API tokens.")
app.add_typer(token_app, name="token")

FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp", ".pdf": "pdf"}


def _settings() -> Settings:
    return Settings()


def _setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def _database(settings: Settings) -> Database:
    from snapshotd.store.db import Database

    db = Database.from_url(settings.resolved_database_url)
    db.migrate()
    return db


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
) -> None:
    """Run the API, the web pages and in-process workers."""
    import uvicorn

    from snapshotd.http.app import create_app
    from snapshotd.store.blobs import FileBlobStore
    from snapshotd.worker import Worker, WorkerThreads

    _setup_logging()
    settings = _settings()
    if workers is not None:
        settings = settings.model_copy(update={"workers": workers})
    db = _database(settings)
    blobs = FileBlobStore(settings.blobs_dir)
    pool = [Worker(settings, db, blobs, name=str(i)) for i in range(settings.workers)]
    threads = WorkerThreads(pool)
    try:
        threads.start()
    except RuntimeError as error:
        threads.stop(timeout=5)
        raise _fail(str(error)) from None
    telemetry = pool[0].telemetry if pool else None
    application = create_app(
        settings,
        db=db,
        blobs=blobs,
        worker=pool[0] if pool else None,
        telemetry=telemetry,
        on_shutdown=threads.stop,
    )
    try:
        uvicorn.run(application, host=host, port=port, log_level="info")
    finally:
        threads.stop()


@app.command()
def worker() -> None:
    """Run a worker alone against the configured database (for scale-out)."""
    from snapshotd.store.blobs import FileBlobStore
    from snapshotd.worker import Worker

    _setup_logging()
    settings = _settings()
    db = _database(settings)
    runner = Worker(settings, db, FileBlobStore(settings.blobs_dir))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, runner.request_stop)
        await runner.run()

    asyncio.run(main())


@app.command()
def capture(
    url: str,
    output: Annotated[Path, typer.Option("-o", "--output", help="File to write.")],
    width: int = 1280,
    height: int = 800,
    full_page: Annotated[bool, typer.Option("--full-page", help="Capture the whole page.")] = False,
    selector: Annotated[str | None, typer.Option(help="Capture one element.")] = None,
    device: Annotated[str | None, typer.Option(help='Emulate a device, e.g. "iPhone 13".')] = None,
    format: Annotated[
        str | None, typer.Option(help="png, jpeg, webp or pdf (default: from -o).")
    ] = None,
    wait_until: str = "load",
    delay_ms: int = 0,
    timeout_ms: int | None = None,
) -> None:
    """Capture one page to a file with a local browser; no server needed."""
    from snapshotd.engines.browser import BrowserPool
    from snapshotd.engines.capture import CaptureEngine
    from snapshotd.engines.egress import EgressPolicy
    from snapshotd.engines.guard import EgressGuard
    from snapshotd.services.snapshots import parse_options

    settings = _settings()
    chosen = format or FORMATS.get(output.suffix.lower(), "png")
    try:
        options = parse_options(
            {
                "url": url,
                "width": width,
                "height": height,
                "full_page": full_page,
                "selector": selector,
                "device": device,
                "format": chosen,
                "wait_until": wait_until,
                "delay_ms": delay_ms,
                "timeout_ms": timeout_ms,
                "evidence": False,
            }
        )
        policy = EgressPolicy(settings.egress_allow)
        policy.check_url(options.url)
    except SnapshotdError as error:
        raise _fail(error.detail) from None

    async def run() -> bytes:
        async with (
            EgressGuard(policy) as guard,
            BrowserPool(executable=settings.chromium_path, proxy_url=guard.url, slots=1) as pool,
        ):
            engine = CaptureEngine(
                pool,
                guard,
                default_timeout_ms=settings.capture_timeout_ms,
                max_full_page_height=settings.max_full_page_height,
                max_navigations=settings.max_navigations,
            )
            result = await engine.capture(options)
        return result.artifacts[0].data

    try:
        data = asyncio.run(run())
    except SnapshotdError as error:
        raise _fail(error.detail) from None
    output.write_bytes(data)
    typer.echo(f"wrote {output} ({len(data)} bytes)", err=True)


@token_app.command("create")
def token_create(
    org: Annotated[str, typer.Option(help="Organization slug (created if missing).")],
    email: Annotated[str, typer.Option(help="User email (created if missing).")],
    role: Annotated[str, typer.Option(help="viewer, uploader, manager or admin.")] = "admin",
    name: Annotated[str, typer.Option(help="A label for the token.")] = "",
) -> None:
    """Create an API token; prints only the token."""
    from snapshotd.services.accounts import create_token

    settings = _settings()
    try:
        token = create_token(_database(settings), org=org, email=email, role=role, name=name)
    except SnapshotdError as error:
        raise _fail(error.detail) from None
    sys.stdout.write(token + "\n")
