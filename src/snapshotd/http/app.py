"""The composition root: `create_app(settings, ...)` builds everything from explicit arguments."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from snapshotd import __version__
from snapshotd.config import Settings
from snapshotd.engines.egress import EgressPolicy
from snapshotd.http import admin, console, native, native_files, openapi, problems, redact, shares
from snapshotd.http.deps import AppServices, ServicesDep
from snapshotd.http.dialects.clickwrap import routes as clickwrap
from snapshotd.http.dialects.kasisto import routes as kasisto
from snapshotd.http.dialects.librato import common as librato
from snapshotd.http.dialects.librato import reads as librato_reads
from snapshotd.http.dialects.librato import spaces as librato_spaces
from snapshotd.http.dialects.thousandeyes import common as thousandeyes
from snapshotd.http.dialects.thousandeyes import v6 as thousandeyes_v6
from snapshotd.http.dialects.thousandeyes import v7 as thousandeyes_v7
from snapshotd.http.fast_read import FastSnapshotRead
from snapshotd.services.chart_snapshots import ChartSnapshots
from snapshotd.services.evidence import Evidence
from snapshotd.services.locations import Locations
from snapshotd.services.metrics import Metrics
from snapshotd.services.ratelimit import TokenBuckets
from snapshotd.services.shares import Shares
from snapshotd.services.snapshots import Snapshots
from snapshotd.services.spaces import Spaces
from snapshotd.services.synthetic import Synthetic
from snapshotd.services.test_windows import TestWindows
from snapshotd.store.blobs import BlobStore, make_blob_store
from snapshotd.store.db import Database
from snapshotd.telemetry import Telemetry
from snapshotd.worker import Worker, make_queue


class BodyLimit:
    """Refuses request bodies over `limit` bytes, whether declared or streamed, with 413."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        received = 0

        def too_large() -> HTTPException:
            # FastAPI turns most errors raised while reading a body into 400; this one passes.
            return HTTPException(413, f"request body is larger than {limit} bytes")

        async def limited() -> Message:
            nonlocal received
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise too_large()
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise too_large()
            return message

        await self.app(scope, limited, send)


def _lifespan(
    on_shutdown: Callable[[], None] | None,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redact.install()
        yield
        if on_shutdown is not None:
            await asyncio.to_thread(on_shutdown)

    return lifespan


def create_app(
    settings: Settings,
    *,
    db: Database | None = None,
    blobs: BlobStore | None = None,
    worker: Worker | None = None,
    telemetry: Telemetry | None = None,
    on_shutdown: Callable[[], None] | None = None,
) -> FastAPI:
    """`on_shutdown` runs (in a thread) when the server stops, before the process exits: serve
    uses it to let in-flight captures finish and close the browsers."""
    db = db or Database.from_url(settings.resolved_database_url)
    blobs = blobs or make_blob_store(settings)
    telemetry = telemetry or (worker.telemetry if worker else Telemetry())
    queue = make_queue(settings, db)
    telemetry.watch_queue(queue.counts)
    snapshots = Snapshots(settings, db, queue, blobs)
    share_service = Shares(settings, db)
    locations = Locations(snapshots)
    metric_store = Metrics(db)
    services = AppServices(
        settings=settings,
        db=db,
        blobs=blobs,
        queue=queue,
        snapshots=snapshots,
        shares=share_service,
        metrics=metric_store,
        spaces=Spaces(db),
        chart_snapshots=ChartSnapshots(settings, snapshots, metric_store),
        synthetic=Synthetic(db, queue, EgressPolicy(settings.egress_allow)),
        test_windows=TestWindows(snapshots, share_service),
        locations=locations,
        evidence=Evidence(locations),
        telemetry=telemetry,
        worker=worker,
        token_requests=TokenBuckets(settings.token_requests_per_minute, policy="requests"),
        misses=TokenBuckets(settings.share_misses_per_minute, policy="misses"),
    )

    app = FastAPI(
        title="snapshotd",
        version=__version__,
        summary="Point-in-time snapshots of web pages through real Chromium.",
        docs_url="/docs",
        redoc_url=None,
        lifespan=_lifespan(on_shutdown),
    )
    app.state.services = services
    problems.install(app)
    openapi.install(app)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(FastSnapshotRead, services=services)  # outermost: it skips the rest
    # Share routes first: /api/v1/snapshots/{id}/shares must win over the artifact route.
    app.include_router(shares.router)
    app.include_router(native.router)
    app.include_router(native_files.router)
    app.include_router(admin.router)
    app.include_router(kasisto.router)
    app.include_router(clickwrap.router)
    app.include_router(librato.router)
    app.include_router(librato_reads.router)
    app.include_router(librato_spaces.router)
    app.include_router(thousandeyes_v6.router)
    app.include_router(thousandeyes_v7.router)
    app.include_router(console.router)
    problems.register_renderer(app, "/create_snap", kasisto.render_error)
    problems.register_renderer(app, "/v1.1/", clickwrap.render_error)
    problems.register_renderer(app, "/v1/", librato.render_error)
    problems.register_renderer(app, "/v6/", thousandeyes_v6.render_error)
    problems.register_renderer(app, "/v7/", thousandeyes.render_v7_error)
    problems.register_renderer(app, "/s/", shares.render_error)

    @app.get(
        "/.well-known/snapshotd-manifest-key",
        summary="The key that signs manifests",
        openapi_extra=openapi.PUBLIC,
    )
    def manifest_key() -> dict[str, str]:
        return services.snapshots.signer.public()

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        """People who open the server's address in a browser land on the console."""
        return RedirectResponse("/console", status_code=303)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz(services: ServicesDep) -> Response:
        checks: dict[str, Any] = {}
        try:
            with services.db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as error:
            checks["database"] = f"unavailable: {type(error).__name__}"
        if services.worker is not None:
            checks["worker"] = "ok" if services.worker.ready.is_set() else "starting"
        ready = all(value == "ok" for value in checks.values())
        headers = {} if ready else {"Retry-After": "5"}
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
            headers=headers,
        )

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        return Response(generate_latest(telemetry.registry), media_type=CONTENT_TYPE_LATEST)

    return app
