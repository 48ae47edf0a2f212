"""The `snapshotd` command. Each command is thin: it builds settings and calls a service."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from snapshotd import cli_capture, cli_client
from snapshotd.config import Settings
from snapshotd.errors import SnapshotdError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from snapshotd.store.db import Database

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Point-in-time snapshots.")
token_app = typer.Typer(no_args_is_help=True, help="API tokens.")
org_app = typer.Typer(no_args_is_help=True, help="Organizations.")
user_app = typer.Typer(no_args_is_help=True, help="Users.")
group_app = typer.Typer(no_args_is_help=True, help="Account groups (ThousandEyes aid).")
app.add_typer(token_app, name="token")
app.add_typer(org_app, name="org")
app.add_typer(user_app, name="user")
app.add_typer(group_app, name="group")
cli_capture.register(app)
cli_client.register(app)

OPERATOR = "operator"


def _settings() -> Settings:
    return Settings()


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
    from snapshotd.engines.browser import private_tmpdir
    from snapshotd.store.blobs import make_blob_store
    from snapshotd.worker import Worker

    _setup_logging()
    settings = _settings()
    _check_signing_key(settings)
    db = _database(settings, wait=True)
    private_tmpdir()
    runner = Worker(settings, db, make_blob_store(settings))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, runner.request_stop)
        await runner.run()

    asyncio.run(main())


def _org_id(db: Database, slug: str) -> str:
    from snapshotd.services.accounts import find_org

    with db.session() as session:
        return find_org(session, slug).id


def _pairs(values: list[str], what: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, equals, setting = value.partition("=")
        if not equals or not key or not setting:
            raise _fail(f"{what} is KEY=VALUE, not {value!r}")
        pairs[key.strip()] = setting.strip()
    return pairs


@org_app.command("create")
def org_create(
    slug: Annotated[str, typer.Argument(help="Lower-case letters, digits and dashes.")],
    name: Annotated[str, typer.Option(help="Display name.")] = "",
) -> None:
    """Create an organization (with its default account group)."""
    from snapshotd.services.accounts import ensure_org

    db = _database(_settings())
    try:
        with db.session() as session:
            org = ensure_org(session, slug, name=name)
            typer.echo(org.id)
    except SnapshotdError as error:
        raise _fail(error.detail) from None


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
) -> None:
    """Change an organization's retention per kind and snapshot-creation rate limits."""
    from snapshotd.services import accounts

    db = _database(_settings())
    try:
        org_id = _org_id(db, slug)
        if retention:
            days = _pairs(retention, "--retention")
            if not all(value.isascii() and value.isdigit() for value in days.values()):
                raise _fail("--retention days must be whole numbers")
            accounts.set_retention(
                db, org_id, {kind: int(value) for kind, value in days.items()}, actor=OPERATOR
            )
        if rate_limit:
            accounts.set_rate_limits(db, org_id, _pairs(rate_limit, "--rate-limit"), actor=OPERATOR)
    except SnapshotdError as error:
        raise _fail(error.detail) from None


@user_app.command("create")
def user_create(
    org: Annotated[str, typer.Option(help="Organization slug.")],
    email: Annotated[str, typer.Option(help="The user's email.")],
    role: Annotated[str, typer.Option(help="viewer, uploader, manager or admin.")] = "viewer",
) -> None:
    """Add a user to an organization; prints the user id."""
    from snapshotd.services import accounts

    db = _database(_settings())
    try:
        user = accounts.add_user(db, _org_id(db, org), email, role, actor=OPERATOR)
    except SnapshotdError as error:
        raise _fail(error.detail) from None
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
    from snapshotd.services.accounts import create_token

    try:
        token = create_token(
            _database(_settings()),
            org=org,
            email=email,
            role=role,
            name=name,
            expires_in_days=expires_in_days,
        )
    except SnapshotdError as error:
        raise _fail(error.detail) from None
    sys.stdout.write(token + "\n")


@token_app.command("list")
def token_list(org: Annotated[str, typer.Option(help="Organization slug.")]) -> None:
    """List an organization's tokens (id, state, user, name, last use); never their secrets."""
    from snapshotd.services import accounts

    db = _database(_settings())
    try:
        rows = accounts.list_tokens(db, _org_id(db, org))
    except SnapshotdError as error:
        raise _fail(error.detail) from None
    for row in rows:
        used = row.last_used_at.isoformat(timespec="seconds") if row.last_used_at else "never"
        state = accounts.token_state(row)
        typer.echo(f"{row.id}\t{state}\t{row.user.email}\t{row.user.role}\t{row.name}\t{used}")


@token_app.command("revoke")
def token_revoke(
    token_id: str, org: Annotated[str, typer.Option(help="Organization slug.")]
) -> None:
    """Revoke a token by id; every API process refuses it within 2 seconds."""
    from snapshotd.services import accounts

    db = _database(_settings())
    try:
        accounts.revoke_token(db, _org_id(db, org), token_id, actor=OPERATOR)
    except SnapshotdError as error:
        raise _fail(error.detail) from None
    typer.echo(f"revoked {token_id}", err=True)


@group_app.command("create")
def group_create(
    org: Annotated[str, typer.Option(help="Organization slug.")],
    name: Annotated[str, typer.Option(help="Group name.")],
) -> None:
    """Create an account group; prints its aid."""
    from snapshotd.services import accounts

    db = _database(_settings())
    try:
        group = accounts.new_account_group(db, _org_id(db, org), name, actor=OPERATOR)
    except SnapshotdError as error:
        raise _fail(error.detail) from None
    typer.echo(str(group.id))


@group_app.command("add")
def group_add(
    org: Annotated[str, typer.Option(help="Organization slug.")],
    aid: Annotated[int, typer.Option(help="The account group id.")],
    email: Annotated[str, typer.Option(help="The user to add.")],
) -> None:
    """Add a user to an account group."""
    from snapshotd.services import accounts

    db = _database(_settings())
    try:
        org_id = _org_id(db, org)
        user = accounts.find_user(db, org_id, email)
        accounts.join_account_group(db, org_id, aid, user.id, actor=OPERATOR)
    except SnapshotdError as error:
        raise _fail(error.detail) from None


@app.command()
def audit(
    org: Annotated[str, typer.Option(help="Organization slug.")],
    action: Annotated[str | None, typer.Option(help="Only this action.")] = None,
    limit: Annotated[int, typer.Option(help="Newest entries to show.")] = 50,
) -> None:
    """Print an organization's audit log, newest first."""
    from snapshotd.services import audit as audit_log

    db = _database(_settings())
    try:
        page = audit_log.query(db, _org_id(db, org), action=action, limit=limit)
    except SnapshotdError as error:
        raise _fail(error.detail) from None
    for event in page.items:
        when = event.at.isoformat(timespec="seconds")
        detail = " ".join(f"{k}={v}" for k, v in event.detail.items())
        typer.echo(
            f"{when}\t{event.actor}\t{event.action}\t{event.target_type}\t{event.target_id}"
            f"\t{detail}"
        )


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
