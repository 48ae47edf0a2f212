"""The worker loop: claim → run the engine → store → complete, with a lease renewed meanwhile.

A worker owns one event loop, one egress guard and one browser pool. `snapshotd serve` runs workers
in threads beside the API; `snapshotd worker` runs one in the foreground. Stopping only sets a flag:
in-flight jobs finish (each has its own hard deadline), then the browser and guard close.

A worker outlives the parts it depends on. While the database is out of reach its loops log one
line, back off and try again, and a finished capture waits to be saved rather than being thrown
away; a blob store out of reach or a full disk fails the attempt, and the job is tried again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import httpx

from snapshotd.config import Settings
from snapshotd.engines.browser import BrowserPool
from snapshotd.engines.capture import CaptureEngine
from snapshotd.engines.charts import ChartRenderer
from snapshotd.engines.egress import EgressPolicy
from snapshotd.engines.guard import EgressGuard
from snapshotd.errors import DatabaseUnavailable, OutageLog, as_outage
from snapshotd.services import agents, retention
from snapshotd.services.chart_snapshots import ChartSnapshots
from snapshotd.services.evidence import Evidence
from snapshotd.services.locations import Locations
from snapshotd.services.metrics import Metrics
from snapshotd.services.snapshots import Snapshots
from snapshotd.services.synthetic import Synthetic
from snapshotd.store.blobs import BlobStore
from snapshotd.store.db import Database
from snapshotd.store.notify import JobListener, conninfo
from snapshotd.store.queue import JobQueue
from snapshotd.telemetry import Telemetry
from snapshotd.worker_jobs import MAX_PAUSE_SECONDS, JobRunner

log = logging.getLogger(__name__)
T = TypeVar("T")


def make_queue(settings: Settings, db: Database) -> JobQueue:
    return JobQueue(
        db,
        lease_seconds=settings.job_lease_seconds,
        max_attempts=settings.job_max_attempts,
        max_length=settings.queue_max_length,
    )


class Worker(JobRunner):
    def __init__(
        self,
        settings: Settings,
        db: Database,
        blobs: BlobStore,
        *,
        telemetry: Telemetry | None = None,
        name: str = "0",
    ) -> None:
        self.settings = settings
        self.queue = make_queue(settings, db)
        self.snapshots = Snapshots(settings, db, self.queue, blobs)
        self.charts = ChartSnapshots(settings, self.snapshots, Metrics(db))
        self.policy = EgressPolicy(settings.egress_allow)
        self.synthetic = Synthetic(db, self.queue, self.policy)
        self.locations = Locations(self.snapshots)
        self.evidence = Evidence(self.locations)
        self.agent_id: int | None = None
        self.renderer = ChartRenderer()
        # One thread renders every chart of this worker: matplotlib holds the GIL anyway, and
        # the renderer's kept figures stay warm in it.
        self._chart_thread = concurrent.futures.ThreadPoolExecutor(1, "charts")
        self.telemetry = telemetry or Telemetry()
        self.outages = OutageLog(log, then="will try again")
        self.id = f"{socket.gethostname()}:{os.getpid()}:{name}"
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._engine: CaptureEngine | None = None
        self._http: httpx.AsyncClient | None = None
        self._guard: EgressGuard | None = None
        self._work_queued: asyncio.Event | None = None
        self.pool: BrowserPool | None = None

    def request_stop(self) -> None:
        self._stop.set()
        self._wake()  # idle claim loops notice at once instead of at their next poll

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def run(self) -> None:
        s = self.settings
        async with (
            EgressGuard(EgressPolicy(s.egress_allow)) as guard,
            BrowserPool(
                executable=s.chromium_path,
                proxy_url=guard.url,
                slots=s.worker_concurrency,
                recycle_after=s.browser_recycle_after,
                sandbox=s.chromium_sandbox,
            ) as pool,
            httpx.AsyncClient(proxy=guard.url, timeout=10.0) as http,
        ):
            self.pool, self._http, self._guard = pool, http, guard
            name = s.agent_name or socket.gethostname()
            agent = await asyncio.to_thread(
                agents.register, self.queue.db, name, location=s.agent_location, country_id=""
            )
            self.agent_id = agent.id
            await asyncio.to_thread(lambda: self.snapshots.signer.key)  # created on first start
            self._engine = CaptureEngine(
                pool,
                guard,
                default_timeout_ms=s.capture_timeout_ms,
                max_full_page_height=s.max_full_page_height,
                max_navigations=s.max_navigations,
            )
            self._loop = asyncio.get_running_loop()
            self._work_queued = asyncio.Event()
            unsubscribe = self.queue.db.on_enqueued(self._wake)
            listener = None
            if self.queue.db.is_postgres:  # jobs queued by other processes and machines
                listener = JobListener(conninfo(self.queue.db.engine), self._wake).start()
            self.ready.set()
            try:
                async with asyncio.TaskGroup() as group:
                    for _ in range(s.worker_concurrency):
                        group.create_task(self._claim_loop())
                    reap_every = max(1.0, s.job_lease_seconds / 3)
                    group.create_task(self._periodically("reaper", reap_every, self._reap))
                    sweep_every = s.sweep_interval_seconds
                    group.create_task(self._periodically("sweep", sweep_every, self._sweep))
                    group.create_task(self._periodically("scheduler", 1.0, self._schedule))
                    group.create_task(self._periodically("agent", 15.0, self._seen))
                    group.create_task(self._periodically("locations", 5.0, self._locations_due))
            finally:
                unsubscribe()
                if listener is not None:
                    await asyncio.to_thread(listener.stop)
                self._chart_thread.shutdown(wait=False)
                self.ready.clear()
                self._loop = None

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Runs `coroutine` on this worker's loop from another thread (the API's)."""
        if self._loop is None:
            coroutine.close()
            raise RuntimeError("worker is not running")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def _wake(self) -> None:
        """Called from any thread of this process when a job was queued."""
        loop, event = self._loop, self._work_queued
        if loop is not None and event is not None:
            loop.call_soon_threadsafe(event.set)

    async def _claim_loop(self) -> None:
        poll = self.settings.poll_interval_seconds
        pause = poll
        while not self.stopping:
            assert self._work_queued is not None
            self._work_queued.clear()
            try:
                claim = await asyncio.to_thread(self.queue.claim, self.id, self.agent_id)
            except Exception as error:
                # Queued jobs wait safely in the database; this loop only has to outlast it.
                self._trouble(error, "claiming jobs")
                pause = min(max(pause, 0.5) * 2, MAX_PAUSE_SECONDS)
                await self._idle(pause)
                continue
            self.outages.recovered(DatabaseUnavailable)
            pause = poll
            if claim is None:
                await self._idle(poll)  # jobs queued by another process: found at the next poll
                continue
            await self.run_claim(claim)

    async def _idle(self, seconds: float) -> None:
        """Waits `seconds`, or less when a job is queued in this process meanwhile."""
        assert self._work_queued is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._work_queued.wait(), seconds)

    def _trouble(self, error: BaseException, doing: str) -> None:
        """Logs a failure of `doing`: an outage in one line (once, not at every try), anything
        else with its traceback, since that is a bug."""
        outage = as_outage(error)
        if outage is None:
            log.error("%s failed; will try again", doing, exc_info=error)
        else:
            self.outages.failed(outage, doing)

    async def _periodically(self, what: str, interval: float, task: Callable[[], object]) -> None:
        """Runs `task` in a thread every `interval` seconds until stopped, logging what it did."""
        while not self.stopping:
            try:
                done = await asyncio.to_thread(task)
                if done:
                    log.info("%s: %s", what, done)
            except Exception as error:
                self._trouble(error, f"running the {what} task")
            deadline = time.monotonic() + interval
            while not self.stopping and time.monotonic() < deadline:
                await asyncio.sleep(min(0.5, interval))

    def _reap(self) -> str:
        reaped = self.queue.reap(self.snapshots.jobs.fail_reaped)
        return f"returned {reaped} jobs with expired leases" if reaped else ""

    def _schedule(self) -> str:
        assert self.agent_id is not None
        queued = self.synthetic.schedule(self.agent_id, time.time())
        return f"queued {queued} test rounds" if queued else ""

    def _locations_due(self) -> str:
        started = self.locations.due()
        return f"started {started} scheduled location captures" if started else ""

    def _seen(self) -> str:
        assert self.agent_id is not None
        agents.seen(self.queue.db, self.agent_id)
        return ""

    def _sweep(self) -> retention.SweepReport:
        """Reclaims expired snapshots and their blobs; reads never depend on it having run."""
        return retention.sweep(self.settings, self.snapshots.db, self.snapshots.blobs)


class WorkerThreads:
    """`snapshotd serve`'s in-process workers, each with its own thread and event loop."""

    def __init__(self, workers: list[Worker]) -> None:
        self.workers = workers
        self._threads = [
            threading.Thread(target=self._main, args=(w,), name=f"worker-{i}", daemon=True)
            for i, w in enumerate(workers)
        ]
        self.errors: list[BaseException] = []

    def _main(self, worker: Worker) -> None:
        try:
            asyncio.run(worker.run())
        except BaseException as error:
            log.exception("worker %s stopped with an error", worker.id)
            self.errors.append(error)
            worker.ready.set()

    def start(self, timeout: float = 60.0) -> None:
        for thread in self._threads:
            thread.start()
        for worker in self.workers:
            if not worker.ready.wait(timeout):
                raise RuntimeError("a worker did not start its browser in time")
        if self.errors:
            raise RuntimeError(f"a worker could not start: {self.errors[0]}")

    def stop(self, timeout: float = 120.0) -> None:
        for worker in self.workers:
            worker.request_stop()
        for thread in self._threads:
            thread.join(timeout)
