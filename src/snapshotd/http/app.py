"""`create_app(settings, ...)`: the ASGI app over the service graph that services/graph.py
builds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from snapshotd import __version__
from snapshotd.config import Settings
from snapshotd.http import (
    admin,
    console,
    native,
    native_files,
    openapi,
    problems,
    redact,
    render,
    replay,
    shares,
)
from snapshotd.http.deps import ServicesDep
from snapshotd.http.dialects import clickwrap, kasisto, librato, thousandeyes
from snapshotd.http.fast_read import FastSnapshotRead
from snapshotd.http.fast_render import FastRenderHit
from snapshotd.services.graph import BlobStore, Database, LocalRunner, Services, build_services
from snapshotd.telemetry import Telemetry

DIALECTS = (kasisto.dialect, clickwrap.dialect, librato.dialect, thousandeyes.dialect)


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
    services: Services | None = None,
    db: Database | None = None,
    blobs: BlobStore | None = None,
    worker: LocalRunner | None = None,
    telemetry: Telemetry | None = None,
    on_shutdown: Callable[[], None] | None = None,
) -> FastAPI:
    """The app over `services`, or over a graph built from settings and the parts given.
    `worker` is this process's own worker, when it runs one. `on_shutdown` runs (in a thread)
    when the server stops, before the process exits: serve uses it to let in-flight captures
    finish and close the browsers."""
    if services is None:
        if telemetry is None and worker is not None:
            telemetry = worker.telemetry
        services = build_services(settings, db=db, blobs=blobs, telemetry=telemetry, runner=worker)
    services.watch_queue()
    telemetry = services.telemetry

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
    app.add_middleware(FastRenderHit, services=services)
    app.add_middleware(FastSnapshotRead, services=services)  # it skips the rest
    if settings.replay_origin:
        # Outermost: the replay host is refused everything but the viewer, fast paths included.
        app.add_middleware(replay.ReplayHost, origin=settings.replay_origin)
    # Share routes first: /api/v1/snapshots/{id}/shares must win over the artifact route.
    app.include_router(shares.router)
    app.include_router(native.router)
    app.include_router(native_files.router)
    app.include_router(admin.router)
    app.include_router(render.router)
    for dialect in DIALECTS:
        dialect.install(app)
    app.include_router(console.router)
    app.include_router(replay.router)
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
        checks = services.readiness()
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
