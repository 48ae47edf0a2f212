"""The job kinds a worker runs: one handler per kind, and `job_handlers`, the one place that maps a
kind to its handler.

A handler runs one claimed job and records its outcome. It may raise LeaseLost (the result is
dropped), an outage (the job stays claimed and the reaper queues it again once its lease expires),
or anything else (the worker records it as a failed attempt). The worker owns the loop around it:
claiming, the lease heartbeat and the retries.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, Protocol, TypeVar

import httpx
from pydantic import ValidationError

from snapshotd.engines import probes, timestamping
from snapshotd.engines.capture import CapturedArtifact, CaptureResult
from snapshotd.engines.charts import ChartRenderer
from snapshotd.engines.stack import CaptureStack
from snapshotd.errors import (
    ArtifactsNotStored,
    BlobStoreUnavailable,
    CaptureFailed,
    DiskFull,
)
from snapshotd.outage_log import OutageLog
from snapshotd.services import dns_api_tests, network_tests, webhooks
from snapshotd.services.capture_request import CaptureRequest
from snapshotd.services.chart_snapshots import CHART_JOB, ChartSnapshots
from snapshotd.services.evidence import Evidence
from snapshotd.services.snapshots import CAPTURE_JOB, Snapshots
from snapshotd.services.synthetic import PROBE_JOB, ProbeSettings, Synthetic
from snapshotd.services.timestamping import TIMESTAMP_JOB, Timestamping
from snapshotd.store.queue import Claim, JobQueue, LeaseLost
from snapshotd.telemetry import Telemetry
from snapshotd.worker import dns_api_jobs, network

# A job's lines are the worker's lines: one logger name to follow a worker by.
log = logging.getLogger("snapshotd.worker")
T = TypeVar("T")
P = ParamSpec("P")


class JobHandler(Protocol):
    async def __call__(self, claim: Claim) -> None: ...


class Persist(Protocol):
    """Runs one of a job's database writes, again while the database is out of reach (the
    worker's `persist`)."""

    async def __call__(self, write: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T: ...


class CaptureJob:
    """A page capture through the capture stack, then change detection for a location's page."""

    def __init__(
        self,
        snapshots: Snapshots,
        evidence: Evidence,
        stack: CaptureStack,
        persist: Persist,
        outages: OutageLog,
        telemetry: Telemetry,
    ) -> None:
        self.snapshots, self.evidence, self.stack = snapshots, evidence, stack
        self.persist, self.outages, self.telemetry = persist, outages, telemetry

    async def __call__(self, claim: Claim) -> None:
        jobs, pool = self.snapshots.jobs, self.stack.pool
        snapshot = await self.persist(jobs.start, claim)
        if snapshot is None:
            await self.persist(jobs.fail, claim, "snapshot was deleted", retry=False)
            return
        try:
            options = CaptureRequest.model_validate({"url": snapshot.url, **snapshot.options})
        except ValidationError as error:
            # Stored by an older version under looser rules: no attempt can succeed.
            reason = f"the stored options are no longer valid: {error.errors()[0]['msg']}"
            await self.persist(jobs.fail, claim, reason, retry=False)
            return
        began, restarts = time.perf_counter(), pool.stats.restarts
        outcome = "success"
        try:
            result = await self.stack.engine.capture(options.options())
            await self.persist(jobs.finish, claim, result)
            self.outages.recovered(BlobStoreUnavailable, DiskFull)
            if snapshot.location_id:
                await asyncio.to_thread(self._compare, snapshot.id)
        except CaptureFailed as error:
            outcome = "failed"
            await self.persist(jobs.fail, claim, error.detail, retry=False)
        except ArtifactsNotStored as error:
            # The blob store or the disk may be back by the next attempt; if not, the job fails
            # with this message, which says why.
            outcome = "error"
            self.outages.failed(error.outage, f"storing the artifacts of job {claim.job_id}")
            await self.persist(jobs.fail, claim, error.detail, retry=True)
        except (LeaseLost, asyncio.CancelledError):
            raise
        except Exception as error:
            outcome = "error"
            log.exception("job %s: capture attempt %d crashed", claim.job_id, claim.attempt)
            message = f"capture crashed: {type(error).__name__}: {str(error).splitlines()[0]}"
            await self.persist(jobs.fail, claim, message, retry=True)
        finally:
            self.telemetry.capture_seconds.labels(outcome).observe(time.perf_counter() - began)
            self.telemetry.browser_restarts.inc(pool.stats.restarts - restarts)

    def _compare(self, snapshot_id: str) -> None:
        """Change detection must never fail a capture that was already stored."""
        try:
            self.evidence.compare_with_previous(snapshot_id)
        except Exception:
            log.exception("snapshot %s: comparing with the previous capture failed", snapshot_id)


class ChartJob:
    """Renders a chart snapshot from stored series, in `thread` (the work is CPU only)."""

    def __init__(
        self,
        snapshots: Snapshots,
        charts: ChartSnapshots,
        renderer: ChartRenderer,
        thread: concurrent.futures.Executor,
        outages: OutageLog,
        telemetry: Telemetry,
    ) -> None:
        self.snapshots, self.charts, self.renderer, self.thread = (
            snapshots,
            charts,
            renderer,
            thread,
        )
        self.outages, self.telemetry = outages, telemetry

    async def __call__(self, claim: Claim) -> None:
        await asyncio.get_running_loop().run_in_executor(self.thread, self._render, claim)

    def _render(self, claim: Claim) -> None:
        jobs = self.snapshots.jobs
        snapshot = jobs.start(claim)
        if snapshot is None:
            jobs.fail(claim, "snapshot was deleted", retry=False)
            return
        began = time.perf_counter()
        try:
            spec, metadata = self.charts.spec(snapshot)
            png = self.renderer.render(spec)
        except Exception as error:
            log.exception("job %s: chart render failed", claim.job_id)
            jobs.fail(claim, f"chart could not be rendered: {error}", retry=False)
            self.telemetry.capture_seconds.labels("error").observe(time.perf_counter() - began)
            return
        image = CapturedArtifact("image", png, "image/png", spec.width, spec.height)
        try:
            jobs.finish(claim, CaptureResult([image], metadata))
        except ArtifactsNotStored as error:
            self.outages.failed(error.outage, f"storing the chart of job {claim.job_id}")
            jobs.fail(claim, error.detail, retry=True)
            return
        self.telemetry.capture_seconds.labels("success").observe(time.perf_counter() - began)


class ProbeJob:
    """One synthetic test round; a failed probe is a result (an error round), not a failed job."""

    def __init__(self, synthetic: Synthetic, stack: CaptureStack) -> None:
        self.synthetic, self.stack = synthetic, stack

    async def __call__(self, claim: Claim) -> None:
        started = await asyncio.to_thread(self.synthetic.start_round, claim)
        if started is None:
            await asyncio.to_thread(finish_job, self.synthetic.queue, claim, None)
            return
        _round, test = started
        if test.type in dns_api_tests.KINDS:
            try:
                outcome = await dns_api_jobs.run_round(test, self.synthetic.policy, self.stack)
            except ValidationError as error:
                reason = f"the test's stored settings are not valid: {error.errors()[0]['msg']}"
                await asyncio.to_thread(finish_job, self.synthetic.queue, claim, reason)
                return
            await asyncio.to_thread(self.synthetic.finish_round, claim, outcome)
            return
        try:
            settings = ProbeSettings.of(test)
        except ValidationError as error:
            reason = f"the test's stored settings are not valid: {error.errors()[0]['msg']}"
            await asyncio.to_thread(finish_job, self.synthetic.queue, claim, reason)
            return
        if test.type in network_tests.NETWORK_TYPES:
            measured = await network.agent_to_server(test, settings, self.synthetic.policy)
            await asyncio.to_thread(self.synthetic.finish_round, claim, measured)
            return
        result: probes.HttpResult | probes.PageLoadResult
        beside: dict[str, Any] | None = None
        if test.type == "page-load":
            result = await probes.page_load(
                self.stack.pool,
                self.stack.guard,
                test.url,
                timeout_s=settings.page_load_time_limit,
            )
        else:
            measuring = (
                asyncio.create_task(network.beside_http(test.url, self.synthetic.policy))
                if settings.network_measurements
                else None
            )
            try:
                result = await probes.http_server(
                    test.url,
                    policy=self.synthetic.policy,
                    timeout_s=settings.http_time_limit,
                    follow_redirects=settings.follow_redirects,
                    desired_status=settings.desired_status_code,
                    verify_tls=settings.verify_certificate,
                    method=settings.request_method,
                    headers=settings.headers,
                    body=settings.post_body,
                    user_agent=settings.user_agent,
                )
            except BaseException:
                if measuring is not None:
                    measuring.cancel()
                raise
            beside = None if measuring is None else await measuring
        outcome = result.to_dict()
        if beside is not None:
            outcome["network"] = beside
        await asyncio.to_thread(self.synthetic.finish_round, claim, outcome)


class WebhookJob:
    def __init__(self, queue: JobQueue, http: httpx.AsyncClient) -> None:
        self.queue, self.http = queue, http

    async def __call__(self, claim: Claim) -> None:
        try:
            secret = await asyncio.to_thread(self._secret, claim)
            await webhooks.deliver(
                self.http,
                url=claim.payload["url"],
                body=claim.payload["body"],
                secret=secret,
                message_id=claim.job_id,
            )
        except (httpx.HTTPError, LookupError) as error:
            await asyncio.to_thread(finish_job, self.queue, claim, f"delivery failed: {error}")
            return
        await asyncio.to_thread(finish_job, self.queue, claim, None)

    def _secret(self, claim: Claim) -> str:
        with self.queue.db.session() as session:
            return webhooks.secret_for(session, claim.org_id or "")


class TimestampJob:
    """Asks one TSA for a token over a sealed manifest, through the guard like every outbound
    request; a TSA that is down or answers badly fails the attempt for the queue to retry."""

    def __init__(self, service: Timestamping, http: httpx.AsyncClient) -> None:
        self.timestamping, self.http = service, http

    async def __call__(self, claim: Claim) -> None:
        manifest = await asyncio.to_thread(self.timestamping.manifest_of, claim)
        if manifest is None:
            await asyncio.to_thread(self.timestamping.superseded, claim)
            return
        url = claim.payload["url"]
        try:
            reply, token = await timestamping.request(
                self.http, url, manifest, self.timestamping.roots
            )
        except (httpx.HTTPError, timestamping.BadToken) as error:
            message = f"{url}: {type(error).__name__}: {error}"
            await asyncio.to_thread(self.timestamping.fail, claim, message)
            return
        await asyncio.to_thread(self.timestamping.store, claim, reply, token)


def finish_job(queue: JobQueue, claim: Claim, error: str | None) -> None:
    """Ends a job that makes no snapshot: complete, or failed with `error` (tried again while
    attempts remain)."""
    with queue.db.session() as session:
        if error is None:
            queue.complete(session, claim)
        else:
            queue.fail(session, claim, error, retry=True)


# Jobs that hold no browser and spend their time waiting on another server. A worker runs them on
# a loop of its own as well, so a slow TSA or webhook receiver never takes a capture's place and
# a token is not queued behind a backlog of captures.
LIGHT_KINDS = (TIMESTAMP_JOB, webhooks.WEBHOOK_JOB)
LIGHT_LOOPS = 1
# Network rounds hold no browser either and mostly wait for answers (a lost probe waits 1 s, a
# silent hop of a path 2 s), so a loop of their own runs many at a time.
NETWORK_KINDS = (network_tests.NETWORK_JOB,)
NETWORK_PARALLEL = 32


def job_handlers(
    *,
    snapshots: Snapshots,
    charts: ChartSnapshots,
    renderer: ChartRenderer,
    chart_thread: concurrent.futures.Executor,
    synthetic: Synthetic,
    evidence: Evidence,
    stack: CaptureStack,
    persist: Persist,
    outages: OutageLog,
    telemetry: Telemetry,
) -> Mapping[str, JobHandler]:
    """Every job kind a worker runs, with its handler."""
    probe = ProbeJob(synthetic, stack)  # network rounds have a job kind, and a lane, of their own
    return {
        CAPTURE_JOB: CaptureJob(snapshots, evidence, stack, persist, outages, telemetry),
        CHART_JOB: ChartJob(snapshots, charts, renderer, chart_thread, outages, telemetry),
        PROBE_JOB: probe,
        network_tests.NETWORK_JOB: probe,
        webhooks.WEBHOOK_JOB: WebhookJob(snapshots.queue, stack.http),
        TIMESTAMP_JOB: TimestampJob(snapshots.timestamping, stack.http),
    }
