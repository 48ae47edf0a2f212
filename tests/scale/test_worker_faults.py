"""Worker processes are killed, frozen, robbed of their browser or handed poison, and nothing
accepted is lost or done twice.

One cluster (an API, two workers, a 5 s lease, 3 attempts) serves the whole module: starting
processes is the slow part. Before each scenario every worker is thawed or restarted and the
queue is drained, so scenarios do not leak into each other.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from snapshotd.store.models import Job
from tests.cluster import Cluster, Service, fresh_database
from tests.pages import PageServer
from tests.scale import (
    artifacts,
    capture,
    job,
    owner,
    post_snapshot,
    snapshot,
    wait_terminal,
    wait_until,
)

SLOW_SECONDS = 3
MAX_ATTEMPTS = 3
ROLES = ["har", "html", "image", "manifest", "wacz"]
REFUSAL = r"(result dropped|abandoned)"


@dataclass
class Rig:
    cluster: Cluster
    engine: Engine
    client: httpx.Client
    pages: PageServer

    def submit(self, path: str, **options: Any) -> tuple[str, str]:
        """Queues a capture of a page of the local server; returns (snapshot id, job id)."""
        created = post_snapshot(self.client, capture(f"{self.pages.url}{path}", **options))
        return created["id"], created["job_id"]

    def hits(self, path: str) -> int:
        return sum(1 for _, hit, _, _ in self.pages.hits if hit == path)

    def roles(self, snapshot_id: str) -> list[str]:
        return sorted(a.role for a in artifacts(self.engine, snapshot_id))

    def other(self, worker: Service) -> Service:
        return next(w for w in self.cluster.workers if w is not worker)

    def heal(self) -> None:
        """Thaws and restarts workers, then waits for the queue to drain."""
        for worker in self.cluster.workers:
            if worker.alive:
                worker.signal(signal.SIGCONT)
            else:
                worker.start()
        for worker in self.cluster.workers:
            worker.wait_ready()
        wait_until("the queue to drain", lambda: self.busy_jobs() == 0, 120)

    def busy_jobs(self) -> int:
        with Session(self.engine) as session:
            busy = select(func.count()).where(Job.state.in_(("queued", "working")))
            return session.scalar(busy) or 0


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    env = {"SNAPSHOTD_JOB_MAX_ATTEMPTS": str(MAX_ATTEMPTS)}
    root = tmp_path_factory.mktemp("faults")
    with (
        PageServer("127.0.0.1") as pages,
        fresh_database() as url,
        Cluster(root, database_url=url, apis=1, workers=2, env=env) as cluster,
        cluster.client() as client,
    ):
        engine = cluster.database()
        try:
            yield Rig(cluster, engine, client, pages)
        finally:
            engine.dispose()


@pytest.fixture
def healed(rig: Rig) -> Rig:
    rig.heal()
    return rig


def refused(worker: Service, job_id: str) -> bool:
    return re.search(rf"job {job_id}: .*{REFUSAL}", worker.log_text()) is not None


def test_killed_worker_job_completes_on_the_other(healed: Rig) -> None:
    rig = healed
    before = rig.hits("/slow")
    snapshot_id, job_id = rig.submit(f"/slow?s={SLOW_SECONDS}")
    victim = owner(rig.cluster, job_id, rig.engine)
    wait_until("the page to be requested", lambda: rig.hits("/slow") > before)

    killed = victim.incarnation
    victim.kill()

    body = wait_terminal(rig.client, snapshot_id)
    assert body["status"] == "success", body["status_message"]
    row = job(rig.engine, job_id)
    assert (row.state, row.attempts) == ("complete", 2)
    assert rig.roles(snapshot_id) == ROLES, "one set of artifacts"
    assert rig.hits("/slow") - before == 2
    # Playwright's driver outlives the worker and takes its Chromium down with it.
    wait_until("the killed worker's Chromium to exit", lambda: not victim.survivors(killed), 30)


def test_frozen_worker_cannot_complete_after_its_lease(healed: Rig) -> None:
    rig = healed
    before = rig.hits("/slow")
    snapshot_id, job_id = rig.submit(f"/slow?s={SLOW_SECONDS}")
    victim = owner(rig.cluster, job_id, rig.engine)
    wait_until("the page to be requested", lambda: rig.hits("/slow") > before)

    victim.signal(signal.SIGSTOP)
    try:
        first = wait_terminal(rig.client, snapshot_id)
        kept = [(a.id, a.role, a.sha256) for a in artifacts(rig.engine, snapshot_id)]
    finally:
        victim.signal(signal.SIGCONT)

    assert first["status"] == "success", first["status_message"]
    assert first["job"]["attempts"] == 2
    wait_until("the thawed worker to give its result up", lambda: refused(victim, job_id), 60)
    after = snapshot(rig.client, snapshot_id)
    assert (after["status"], after["completed_at"]) == ("success", first["completed_at"])
    assert [(a.id, a.role, a.sha256) for a in artifacts(rig.engine, snapshot_id)] == kept
    row = job(rig.engine, job_id)
    assert (row.state, row.attempts) == ("complete", 2)

    # It keeps working: with the other worker frozen, only it can take the next capture.
    rig.other(victim).signal(signal.SIGSTOP)
    try:
        later, _ = rig.submit("/")
        assert wait_terminal(rig.client, later)["status"] == "success"
    finally:
        rig.other(victim).signal(signal.SIGCONT)
    assert victim.alive


def test_worker_frozen_before_starting_cannot_undo_a_finished_snapshot(healed: Rig) -> None:
    rig = healed
    for worker in rig.cluster.workers:
        worker.signal(signal.SIGSTOP)
    try:
        snapshot_id, job_id = rig.submit("/")
        with rig.engine.connect() as locker:
            # Holds the claiming worker inside Snapshots.start, then freezes it there.
            locker.execute(text("LOCK TABLE snapshots IN ACCESS EXCLUSIVE MODE"))
            for worker in rig.cluster.workers:
                worker.signal(signal.SIGCONT)
            victim = owner(rig.cluster, job_id, rig.engine)
            wait_until("the worker to wait for the lock", lambda: _waiting_on_lock(rig.engine))
            victim.signal(signal.SIGSTOP)
            locker.rollback()
        # The other worker may take the job over (or wait, if the frozen one still holds its
        # row): either way the frozen worker's lease runs out before it wakes.
        wait_until("the job to end or its lease to be long gone", lambda: _over(rig, job_id))
    finally:
        for worker in rig.cluster.workers:
            worker.signal(signal.SIGCONT)

    def settled() -> bool:
        row = job(rig.engine, job_id)
        return row.state == "complete" and (row.attempts == 1 or refused(victim, job_id))

    wait_until("the job to complete and the woken worker to finish or give up", settled)
    assert snapshot(rig.client, snapshot_id)["status"] == "success"
    assert rig.roles(snapshot_id) == ROLES


def _over(rig: Rig, job_id: str) -> bool:
    row = job(rig.engine, job_id)
    lease = row.lease_expires_at
    return row.finished_at is not None or (
        lease is not None and datetime.now(UTC) > lease + timedelta(seconds=5)
    )


def _waiting_on_lock(engine: Engine, table: str = "snapshots") -> bool:
    """True when some session waits for a lock with a statement on `table`."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND query ILIKE :pattern AND pid <> pg_backend_pid()"
    )
    with engine.connect() as connection:
        return bool(connection.scalar(query, {"pattern": f"%{table}%"}))


def test_reaper_skips_a_job_whose_worker_froze_mid_transaction(healed: Rig) -> None:
    """A worker frozen (or cut off from the network) inside the transaction that completes one
    job keeps that job's row locked; the other jobs it held must still be reaped."""
    rig = healed
    victim, other = rig.cluster.workers
    for worker in (victim, other):
        worker.signal(signal.SIGSTOP)
    try:
        slow_id, slow_job = rig.submit(f"/slow?s={SLOW_SECONDS}")
        fast_id, fast_job = rig.submit("/")
        with rig.engine.connect() as locker:
            # Holds the victim inside the transaction that completes the fast job.
            locker.execute(text("LOCK TABLE artifacts IN ACCESS EXCLUSIVE MODE"))
            victim.signal(signal.SIGCONT)
            wait_until(
                "the worker to wait for the lock", lambda: _waiting_on_lock(rig.engine, "artifacts")
            )
            assert owner(rig.cluster, slow_job, rig.engine) is victim
            victim.signal(signal.SIGSTOP)
            locker.rollback()
        other.signal(signal.SIGCONT)
        slow = wait_terminal(rig.client, slow_id, timeout=60)
    finally:
        for worker in (victim, other):
            worker.signal(signal.SIGCONT)
    assert slow["status"] == "success", slow["status_message"]
    assert slow["job"]["attempts"] == 2
    fast = wait_terminal(rig.client, fast_id)
    assert (fast["status"], fast["job"]["attempts"]) == ("success", 1)
    assert job(rig.engine, fast_job).state == "complete"


@dataclass
class ChromiumKilled:
    first: dict[str, Any]
    attempts: int
    victim: Service
    killed: list[int]
    later: list[dict[str, Any]]
    relaunched: list[int]


@pytest.fixture(scope="module")
def chromium_killed(rig: Rig) -> ChromiumKilled:
    """Kills every Chromium process of the worker running a capture, mid-navigation."""
    rig.heal()
    before = rig.hits("/slow")
    snapshot_id, job_id = rig.submit(f"/slow?s={SLOW_SECONDS}")
    victim = owner(rig.cluster, job_id, rig.engine)
    wait_until("the page to be requested", lambda: rig.hits("/slow") > before)
    killed = victim.chromium()
    for pid in killed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    first = wait_terminal(rig.client, snapshot_id)
    attempts = job(rig.engine, job_id).attempts
    rig.other(victim).signal(signal.SIGSTOP)  # the next captures can only run on the victim
    try:
        later = [rig.submit("/")[0] for _ in range(2)]
        done = [wait_terminal(rig.client, snapshot_id) for snapshot_id in later]
        relaunched = victim.chromium()
    finally:
        rig.other(victim).signal(signal.SIGCONT)
    return ChromiumKilled(first, attempts, victim, killed, done, relaunched)


def test_worker_outlives_its_chromium(chromium_killed: ChromiumKilled) -> None:
    outcome = chromium_killed
    assert outcome.killed, "the worker had no Chromium to kill"
    assert outcome.victim.alive
    assert [body["status"] for body in outcome.later] == ["success", "success"]
    assert outcome.relaunched, "no new Chromium"
    assert not set(outcome.relaunched) & set(outcome.killed)


def test_capture_whose_chromium_died_is_retried(chromium_killed: ChromiumKilled) -> None:
    outcome = chromium_killed
    assert outcome.first["status"] == "success", outcome.first["status_message"]
    assert outcome.attempts == 2


@dataclass
class Poisoned:
    unusable: Job
    crashing: Job
    crashing_snapshot: dict[str, Any]
    others: list[dict[str, Any]]
    kills: int
    restarts: int
    alive: bool


@pytest.fixture(scope="module")
def poisoned(rig: Rig) -> Poisoned:
    """Two poison jobs at once, among ordinary captures: a job row whose payload no worker can
    use, and a capture whose worker is SIGKILLed as soon as it claims it, every time."""
    rig.heal()
    started = sum(worker.incarnation for worker in rig.cluster.workers)
    with Session(rig.engine) as session:
        unusable = Job(kind="capture", payload={"snapshot": "?"}, max_attempts=MAX_ATTEMPTS)
        session.add(unusable)
        session.commit()
        unusable_id = unusable.id
    # The page answers long after the last kill, so only the kills can end this capture.
    crashing_id, crashing_job = rig.submit("/slow?s=80", timeout_ms=90_000)
    row, kills = _kill_on_claim(rig, crashing_job, after_attempt=0), 1
    # Ordinary captures run while the poison job waits out its lease: none is in flight at a
    # kill, so none is collateral damage.
    others = [rig.submit("/")[0] for _ in range(4)]
    done = [wait_terminal(rig.client, snapshot_id) for snapshot_id in others]
    while not (row := _kill_on_claim(rig, crashing_job, row.attempts)).finished_at:
        kills += 1
    for worker in rig.cluster.workers:
        worker.wait_ready()
    wait_until("the unusable job to end", lambda: job(rig.engine, unusable_id).finished_at, 120)
    return Poisoned(
        unusable=job(rig.engine, unusable_id),
        crashing=row,
        crashing_snapshot=wait_terminal(rig.client, crashing_id),
        others=done,
        kills=kills,
        restarts=sum(worker.incarnation for worker in rig.cluster.workers) - started,
        alive=all(worker.alive for worker in rig.cluster.workers),
    )


def _kill_on_claim(rig: Rig, job_id: str, after_attempt: int) -> Job:
    """Waits for the job's next claim and SIGKILLs the worker that made it (restarting it);
    returns the job as it was claimed, or as it ended when no claim came."""

    def ended_or_claimed() -> Job | None:
        row = job(rig.engine, job_id)
        claimed = row.state == "working" and row.attempts > after_attempt
        return row if row.finished_at or claimed else None

    row = wait_until(f"job {job_id} to be claimed again", ended_or_claimed, 120)
    if not row.finished_at:
        victim = owner(rig.cluster, job_id, rig.engine)
        victim.kill()
        victim.start()
    return row


def test_poison_jobs_fail_after_max_attempts_and_others_complete(poisoned: Poisoned) -> None:
    assert (poisoned.crashing.state, poisoned.crashing.attempts) == ("failed", MAX_ATTEMPTS)
    assert poisoned.kills == MAX_ATTEMPTS
    assert poisoned.crashing_snapshot["status"] == "failed"
    assert "stopped responding" in poisoned.crashing_snapshot["status_message"]
    assert (poisoned.unusable.state, poisoned.unusable.attempts) == ("failed", MAX_ATTEMPTS)
    assert [body["status"] for body in poisoned.others] == ["success"] * len(poisoned.others)
    # No crash loop: every worker is up, and none was started more often than it was killed.
    assert poisoned.alive
    assert poisoned.restarts == poisoned.kills


def test_poison_job_failure_says_why(poisoned: Poisoned) -> None:
    assert "snapshot_id" in poisoned.unusable.error, poisoned.unusable.error
