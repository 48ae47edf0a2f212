"""The worker loop: claim → hand the job to its kind's handler (`worker/jobs.py`) → complete, with
a lease renewed meanwhile.

A worker owns one event loop and one capture stack (egress guard, browser pool, capture engine).
`snapshotd serve` runs workers in threads beside the API; `snapshotd worker` runs one in the
foreground. Stopping only sets a flag: in-flight jobs finish (each has its own hard deadline), then
the browser and guard close.

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
from collections.abc import Callable, Coroutine, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, ParamSpec, TypeVar

from snapshotd.config import Settings
from snapshotd.engines.charts import ChartRenderer
from snapshotd.engines.stack import CaptureStack, capture_stack
from snapshotd.errors import DatabaseUnavailable
from snapshotd.outage_log import OutageLog
from snapshotd.services import retention
from snapshotd.services.graph import build_services
from snapshotd.services.snapshots import CAPTURE_JOB
from snapshotd.store.blobs import BlobStore
from snapshotd.store.db import Database
from snapshotd.store.models import Snapshot
from snapshotd.store.notify import JobListener, conninfo
from snapshotd.store.outages import as_outage
from snapshotd.store.queue import Claim, LeaseLost
from snapshotd.telemetry import Telemetry
from snapshotd.worker.jobs import (
    LIGHT_KINDS,
    LIGHT_LOOPS,
    NETWORK_KINDS,
    NETWORK_PARALLEL,
    JobHandler,
    job_handlers,
)

log = logging.getLogger(__name__)
StackFactory = Callable[[Settings], AbstractAsyncContextManager[CaptureStack]]
T = TypeVar("T")
P = ParamSpec("P")
# The longest pause between two tries of something the database refused because it was down.
MAX_PAUSE_SECONDS = 5.0


class Worker:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        blobs: BlobStore,
        *,
        telemetry: Telemetry | None = None,
        name: str = "0",
        stack: StackFactory = capture_stack,
    ) -> None:
        """`stack` starts the capture stack when the worker runs (a test may hand in one
        without a browser)."""
        self.settings = settings
        self._start_stack = stack
        self.services = build_services(settings, db=db, blobs=blobs, telemetry=telemetry)
        self.queue = self.services.queue
        self.snapshots = self.services.snapshots
        self.charts = self.services.chart_snapshots
        self.synthetic = self.services.synthetic
        self.locations = self.services.locations
        self.evidence = self.services.evidence
        self.agent_id: int | None = None
        self.renderer = ChartRenderer()
        # One thread renders every chart of this worker: matplotlib holds the GIL anyway, and
        # the renderer's kept figures stay warm in it.
        self._chart_thread = concurrent.futures.ThreadPoolExecutor(1, "charts")
        self.telemetry = self.services.telemetry
        self.outages = OutageLog(log, then="will try again")
        self.id = f"{socket.gethostname()}:{os.getpid()}:{name}"
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._work_queued: asyncio.Event | None = None
        self.stack: CaptureStack | None = None
        self.handlers: Mapping[str, JobHandler] = {}

    def request_stop(self) -> None:
        self._stop.set()
        self._wake()  # idle claim loops notice at once instead of at their next poll

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def run(self) -> None:
        s = self.settings
        async with self._start_stack(s) as stack:
            self.stack = stack
            self.handlers = job_handlers(
                snapshots=self.snapshots,
                charts=self.charts,
                renderer=self.renderer,
                chart_thread=self._chart_thread,
                synthetic=self.synthetic,
                evidence=self.evidence,
                stack=stack,
                persist=self.persist,
                outages=self.outages,
                telemetry=self.telemetry,
            )
            name = s.agent_name or socket.gethostname()
            agent = await asyncio.to_thread(
                self.services.agents.register,
                name,
                location=s.agent_location,
                country_id="",
            )
            self.agent_id = agent.id
            await asyncio.to_thread(lambda: self.snapshots.signer.key)  # created on first start
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
                    for _ in range(LIGHT_LOOPS):
                        group.create_task(self._claim_loop(LIGHT_KINDS))
                    group.create_task(self._claim_loop(NETWORK_KINDS, NETWORK_PARALLEL))
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

    async def _claim_loop(self, kinds: tuple[str, ...] = (), parallel: int = 1) -> None:
        """Claims and runs one job after another: of any kind, or only of `kinds` when given.
        With `parallel` above 1 (jobs that mostly wait), up to that many run at once, each in a
        task of its own, while this one loop does the claiming (and the idle polling)."""
        poll = self.settings.poll_interval_seconds
        pause = poll
        slots = asyncio.Semaphore(parallel)
        running: set[asyncio.Task[None]] = set()

        async def run(claim: Claim) -> None:
            try:
                await self.run_claim(claim)
            finally:
                slots.release()

        try:
            while not self.stopping:
                await slots.acquire()
                assert self._work_queued is not None
                self._work_queued.clear()
                try:
                    claim = await asyncio.to_thread(self.queue.claim, self.id, self.agent_id, kinds)
                except Exception as error:
                    # Queued jobs wait safely in the database; this loop only has to outlast it.
                    slots.release()
                    self._trouble(error, "claiming jobs")
                    pause = min(max(pause, 0.5) * 2, MAX_PAUSE_SECONDS)
                    await self._idle(pause)
                    continue
                self.outages.recovered(DatabaseUnavailable)
                pause = poll
                if claim is None:
                    slots.release()
                    await self._idle(poll)  # jobs queued by another process: the next poll
                    continue
                if parallel == 1:
                    await run(claim)
                else:
                    task = asyncio.create_task(run(claim))
                    running.add(task)
                    task.add_done_callback(running.discard)
        finally:
            if running:
                await asyncio.gather(*running, return_exceptions=True)

    async def run_claimed(self, snapshot: Snapshot) -> None:
        """Runs a snapshot created with `claimed_by=self.id` (its job is already attempt 1)."""
        assert snapshot.job_id is not None
        payload = {"snapshot_id": snapshot.id}
        max_attempts = self.queue.max_attempts
        await self.run_claim(
            Claim(snapshot.job_id, CAPTURE_JOB, payload, 1, max_attempts, snapshot.org_id)
        )

    async def run_claim(self, claim: Claim) -> None:
        """Runs one claimed job to an outcome; never raises (failures are recorded on the job).
        A job whose lease was lost is dropped; one an outage interrupted is tried again."""
        job = asyncio.current_task()
        assert job is not None
        heartbeat = asyncio.create_task(self._heartbeat(claim, job))
        try:
            handler = self.handlers.get(claim.kind)
            if handler is None:
                await asyncio.to_thread(
                    self.snapshots.jobs.fail,
                    claim,
                    f"unknown job kind {claim.kind!r}",
                    retry=False,
                )
            else:
                await handler(claim)
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

    async def persist(self, write: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
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
        self.services.agents.seen(self.agent_id)
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
