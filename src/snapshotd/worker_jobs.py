"""Running one claimed job: dispatch by kind, the lease heartbeat, and a handler for each kind.

Each handler records the job's outcome. A job whose lease was lost is dropped; one an outage
interrupted is tried again. `Worker` supplies the event loop, browser pool, guard and services.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import httpx

from snapshotd.config import Settings
from snapshotd.engines import probes
from snapshotd.engines.browser import BrowserPool
from snapshotd.engines.capture import (
    CapturedArtifact,
    CaptureEngine,
    CaptureOptions,
    CaptureResult,
)
from snapshotd.engines.charts import ChartRenderer
from snapshotd.engines.egress import EgressPolicy
from snapshotd.engines.guard import EgressGuard
from snapshotd.errors import (
    ArtifactsNotStored,
    BlobStoreUnavailable,
    CaptureFailed,
    DatabaseUnavailable,
    DiskFull,
    OutageLog,
    as_outage,
)
from snapshotd.services import webhooks
from snapshotd.services.chart_snapshots import CHART_JOB, ChartSnapshots
from snapshotd.services.evidence import Evidence
from snapshotd.services.snapshots import CAPTURE_JOB, Snapshots
from snapshotd.services.synthetic import PROBE_JOB, Synthetic
from snapshotd.store.models import Snapshot
from snapshotd.store.queue import Claim, JobQueue, LeaseLost
from snapshotd.telemetry import Telemetry

# A job's lines are the worker's lines: one logger name to follow a worker by.
log = logging.getLogger("snapshotd.worker")
T = TypeVar("T")
P = ParamSpec("P")
# The longest pause between two tries of something the database refused because it was down.
MAX_PAUSE_SECONDS = 5.0


class JobRunner:
    """The job-running half of `Worker`, which sets every attribute declared here."""

    settings: Settings
    queue: JobQueue
    snapshots: Snapshots
    charts: ChartSnapshots
    policy: EgressPolicy
    synthetic: Synthetic
    evidence: Evidence
    renderer: ChartRenderer
    telemetry: Telemetry
    outages: OutageLog
    pool: BrowserPool | None
    _chart_thread: concurrent.futures.ThreadPoolExecutor
    _engine: CaptureEngine | None
    _http: httpx.AsyncClient | None
    _guard: EgressGuard | None

    if TYPE_CHECKING:

        @property
        def stopping(self) -> bool: ...

        def _trouble(self, error: BaseException, doing: str) -> None: ...

    async def run_claimed(self, snapshot: Snapshot) -> None:
        """Runs a snapshot created with `claimed_by=self.id` (its job is already attempt 1)."""
        assert snapshot.job_id is not None
        payload = {"snapshot_id": snapshot.id}
        max_attempts = self.queue.max_attempts
        await self.run_claim(
            Claim(snapshot.job_id, CAPTURE_JOB, payload, 1, max_attempts, snapshot.org_id)
        )

    async def run_claim(self, claim: Claim) -> None:
        """Runs one claimed job to an outcome; never raises (failures are recorded on the job)."""
        job = asyncio.current_task()
        assert job is not None
        heartbeat = asyncio.create_task(self._heartbeat(claim, job))
        try:
            if claim.kind == CAPTURE_JOB:
                await self._capture(claim)
            elif claim.kind == CHART_JOB:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(self._chart_thread, self._chart, claim)
            elif claim.kind == PROBE_JOB:
                await self._probe(claim)
            elif claim.kind == webhooks.WEBHOOK_JOB:
                await self._webhook(claim)
            else:
                await asyncio.to_thread(
                    self.snapshots.jobs.fail, claim, f"unknown job kind {claim.kind!r}", retry=False
                )
        except LeaseLost as error:
            log.warning("job %s: %s; result dropped", claim.job_id, error)
        except asyncio.CancelledError:
            if not heartbeat.done() or self.stopping:
                raise
            log.warning("job %s: lease lost while running; abandoned", claim.job_id)
        except Exception as error:
            self._trouble(error, f"running job {claim.job_id}")
            if as_outage(error) is None:
                # A job this worker cannot run (a bug, or a payload it cannot use): record why, so
                # the attempts run out with the reason instead of a silent lease expiry.
                message = f"the job could not be run: {type(error).__name__}: {error}"
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self.snapshots.jobs.fail, claim, message, retry=True)
            # Otherwise the job stays claimed; when its lease expires the reaper queues it again.
        finally:
            heartbeat.cancel()

    async def _heartbeat(self, claim: Claim, job: asyncio.Task[Any]) -> None:
        """Renews the lease every third of it; cancels the job once the lease is lost. A renewal
        the database refuses is tried again at the next beat: the lease has time to spare, and
        if it runs out meanwhile the fenced writes drop this worker's result."""
        interval = max(1.0, self.settings.job_lease_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                held = await asyncio.to_thread(self.queue.heartbeat, claim)
            except Exception as error:
                self._trouble(error, f"renewing the lease of job {claim.job_id}")
                continue
            if not held:
                job.cancel()
                return

    async def _persist(self, write: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Runs `write` (one of the job's database writes) in a thread, again and again while the
        database is out of reach: the work is done and worth keeping, and the lease decides
        whether it still may be kept (once the database is back, a lost lease cancels the job
        through the heartbeat, or fences the write). Gives up only when the worker stops."""
        pause = 0.5
        while True:
            try:
                return await asyncio.to_thread(write, *args, **kwargs)
            except Exception as error:
                outage = as_outage(error)
                if not isinstance(outage, DatabaseUnavailable) or self.stopping:
                    raise
                self.outages.failed(outage, "saving a job's progress")
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_PAUSE_SECONDS)

    async def _capture(self, claim: Claim) -> None:
        assert self._engine is not None and self.pool is not None
        snapshot = await self._persist(self.snapshots.jobs.start, claim)
        if snapshot is None:
            await self._persist(
                self.snapshots.jobs.fail, claim, "snapshot was deleted", retry=False
            )
            return
        options = CaptureOptions.model_validate({"url": snapshot.url, **snapshot.options})
        began, restarts = time.perf_counter(), self.pool.stats.restarts
        outcome = "success"
        try:
            result = await self._engine.capture(options)
            await self._persist(self.snapshots.jobs.finish, claim, result)
            self.outages.recovered(BlobStoreUnavailable, DiskFull)
            if snapshot.location_id:
                await asyncio.to_thread(self._compare, snapshot.id)
        except CaptureFailed as error:
            outcome = "failed"
            await self._persist(self.snapshots.jobs.fail, claim, error.detail, retry=False)
        except ArtifactsNotStored as error:
            # The blob store or the disk may be back by the next attempt; if not, the job fails
            # with this message, which says why.
            outcome = "error"
            self.outages.failed(error.outage, f"storing the artifacts of job {claim.job_id}")
            await self._persist(self.snapshots.jobs.fail, claim, error.detail, retry=True)
        except (LeaseLost, asyncio.CancelledError):
            raise
        except Exception as error:
            outcome = "error"
            log.exception("job %s: capture attempt %d crashed", claim.job_id, claim.attempt)
            message = f"capture crashed: {type(error).__name__}: {str(error).splitlines()[0]}"
            await self._persist(self.snapshots.jobs.fail, claim, message, retry=True)
        finally:
            self.telemetry.capture_seconds.labels(outcome).observe(time.perf_counter() - began)
            self.telemetry.browser_restarts.inc(self.pool.stats.restarts - restarts)

    def _compare(self, snapshot_id: str) -> None:
        """Change detection must never fail a capture that was already stored."""
        try:
            self.evidence.compare_with_previous(snapshot_id)
        except Exception:
            log.exception("snapshot %s: comparing with the previous capture failed", snapshot_id)

    async def _probe(self, claim: Claim) -> None:
        """Runs one synthetic test round; a failed probe is a result (an error round), not a
        failed job."""
        assert self.pool is not None and self._guard is not None
        started = await asyncio.to_thread(self.synthetic.start_round, claim)
        if started is None:
            await asyncio.to_thread(self._finish_job, claim, None)
            return
        _round, test = started
        config = test.config or {}
        result: probes.HttpResult | probes.PageLoadResult
        if test.type == "page-load":
            result = await probes.page_load(
                self.pool, self._guard, test.url, timeout_s=config.get("pageLoadTimeLimit", 10)
            )
        else:
            result = await probes.http_server(
                test.url,
                policy=self.policy,
                timeout_s=config.get("httpTimeLimit", 5),
                follow_redirects=config.get("followRedirects", True),
                desired_status=config.get("desiredStatusCode", "default"),
                verify_tls=config.get("verifyCertificate", False),
                method=config.get("requestMethod", "get"),
                headers=config.get("headers") or (),
                body=config.get("postBody"),
                user_agent=config.get("userAgent"),
            )
        await asyncio.to_thread(self.synthetic.finish_round, claim, result.to_dict())

    def _chart(self, claim: Claim) -> None:
        """Renders a chart snapshot from stored series (CPU only, so it runs in a thread)."""
        snapshot = self.snapshots.jobs.start(claim)
        if snapshot is None:
            self.snapshots.jobs.fail(claim, "snapshot was deleted", retry=False)
            return
        began = time.perf_counter()
        try:
            spec, metadata = self.charts.spec(snapshot)
            png = self.renderer.render(spec)
        except Exception as error:
            log.exception("job %s: chart render failed", claim.job_id)
            self.snapshots.jobs.fail(claim, f"chart could not be rendered: {error}", retry=False)
            self.telemetry.capture_seconds.labels("error").observe(time.perf_counter() - began)
            return
        image = CapturedArtifact("image", png, "image/png", spec.width, spec.height)
        try:
            self.snapshots.jobs.finish(claim, CaptureResult([image], metadata))
        except ArtifactsNotStored as error:
            self.outages.failed(error.outage, f"storing the chart of job {claim.job_id}")
            self.snapshots.jobs.fail(claim, error.detail, retry=True)
            return
        self.telemetry.capture_seconds.labels("success").observe(time.perf_counter() - began)

    async def _webhook(self, claim: Claim) -> None:
        assert self._http is not None
        try:
            secret = await asyncio.to_thread(self._webhook_secret, claim)
            await webhooks.deliver(
                self._http,
                url=claim.payload["url"],
                body=claim.payload["body"],
                secret=secret,
                message_id=claim.job_id,
            )
        except (httpx.HTTPError, LookupError) as error:
            await asyncio.to_thread(self._finish_job, claim, f"delivery failed: {error}")
            return
        await asyncio.to_thread(self._finish_job, claim, None)

    def _webhook_secret(self, claim: Claim) -> str:
        with self.queue.db.session() as session:
            return webhooks.secret_for(session, claim.org_id or "")

    def _finish_job(self, claim: Claim, error: str | None) -> None:
        with self.queue.db.session() as session:
            if error is None:
                self.queue.complete(session, claim)
            else:
                self.queue.fail(session, claim, error, retry=True)
