"""Captures while the client waits (`GET /api/v1/capture`, Kasisto's `/create_snap`).

A process that runs its own worker hands it the job at once; any other process waits on the
queue. Either way the job row exists first, so a crash mid-capture is retried like any job.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Coroutine
from typing import Any, Protocol

from snapshotd.config import Settings
from snapshotd.errors import CaptureFailed, ServiceUnavailable
from snapshotd.services.accounts import Principal
from snapshotd.services.capture_cache import CacheAsk, Cached
from snapshotd.services.capture_request import CaptureRequest
from snapshotd.services.snapshots import Snapshots
from snapshotd.store.models import Snapshot
from snapshotd.telemetry import Telemetry


class LocalRunner(Protocol):
    """What a synchronous capture needs of this process's worker (worker.Worker is one)."""

    id: str
    ready: threading.Event
    telemetry: Telemetry

    def submit(self, coroutine: Coroutine[Any, Any, None]) -> concurrent.futures.Future[None]: ...

    def run_claimed(self, snapshot: Snapshot) -> Coroutine[Any, Any, None]: ...


class SyncCapture:
    def __init__(
        self,
        settings: Settings,
        snapshots: Snapshots,
        runner: LocalRunner | None,
        telemetry: Telemetry,
    ) -> None:
        self.settings = settings
        self.snapshots = snapshots
        self.runner = runner
        self.telemetry = telemetry

    async def capture(
        self,
        principal: Principal,
        options: CaptureRequest,
        *,
        surface: str,
        cache: CacheAsk | None = None,
    ) -> Cached:
        """The finished snapshot, reused from the capture cache when it can be (`cache`, the
        instance's default when None); CaptureFailed when the capture failed,
        ServiceUnavailable when it did not end in time (the job goes on, and the snapshot can be
        fetched later)."""
        runner = self.runner
        local = runner if runner is not None and runner.ready.is_set() else None
        org_id = principal.org_id
        got = await asyncio.to_thread(
            self.snapshots.create_cached,
            org_id,
            options,
            cache or CacheAsk(),
            surface=surface,
            claimed_by=local.id if local is not None else None,
            actor=principal.email,
        )
        self.telemetry.capture_cache.labels(got.header).inc()
        snapshot = got.snapshot
        if snapshot.status != "success":  # not a finished capture from the cache
            # A running capture the request joined is waited for wherever it runs.
            if got.cached or local is None or not await _ran_on(local, snapshot):
                await self._wait_for(org_id, snapshot, options)
            snapshot = await asyncio.to_thread(self.snapshots.get, org_id, snapshot.id)
            got = Cached(snapshot, cached=got.cached, ttl=got.ttl)
        if snapshot.status == "failed":
            raise CaptureFailed(snapshot.status_message or "the capture failed")
        if snapshot.status != "success":
            raise ServiceUnavailable(
                f"snapshot {snapshot.id} is still {snapshot.status}; fetch it later",
                retry_after=5,
            )
        return got

    async def _wait_for(self, org_id: str, snapshot: Snapshot, options: CaptureRequest) -> None:
        limit = (options.timeout_ms or self.settings.capture_timeout_ms) / 1000 + 30
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            current = await asyncio.to_thread(self.snapshots.get, org_id, snapshot.id)
            if current.status in ("success", "failed"):
                return
            await asyncio.sleep(0.1)


async def _ran_on(local: LocalRunner, snapshot: Snapshot) -> bool:
    """Runs the claimed job on this process's worker; False when the worker stopped since it
    said it was ready. The job is in the queue either way (a claim whose worker is gone is
    reaped when its lease runs out), so the caller can wait for it there."""
    try:
        future = local.submit(local.run_claimed(snapshot))
    except RuntimeError:
        return False
    await asyncio.wrap_future(future)
    return True
