"""The job-queue contract, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import update

from snapshotd.errors import TooManyRequests
from snapshotd.store.db import Database
from snapshotd.store.models import Job, utcnow
from snapshotd.store.queue import JobQueue, LeaseLost


def make(db: Database, **kwargs: int) -> JobQueue:
    return JobQueue(db, lease_seconds=kwargs.pop("lease", 30), **kwargs)


def enqueue(queue: JobQueue, n: int = 1, **kwargs: object) -> list[str]:
    ids = []
    with queue.db.session() as session:
        for i in range(n):
            ids.append(queue.enqueue(session, "test", {"n": i}, **kwargs).id)  # type: ignore[arg-type]
    return ids


def expire_leases(db: Database) -> None:
    with db.session() as session:
        session.execute(update(Job).values(lease_expires_at=utcnow() - timedelta(seconds=1)))


def test_claims_oldest_first_and_payload_is_json(any_db: Database) -> None:
    queue = make(any_db)
    first, second = enqueue(queue, 2)
    claim = queue.claim("w1")
    assert claim is not None
    assert (claim.job_id, claim.payload, claim.attempt) == (first, {"n": 0}, 1)
    assert queue.claim("w1").job_id == second  # type: ignore[union-attr]
    assert queue.claim("w1") is None


def test_a_claim_for_some_kinds_passes_older_jobs_of_other_kinds(any_db: Database) -> None:
    queue = make(any_db)
    (capture,) = enqueue(queue)
    with queue.db.session() as session:
        stamp = queue.enqueue(session, "timestamp", {"n": 1}).id
    claim = queue.claim("w1", kinds=("timestamp", "webhook"))
    assert claim is not None and claim.job_id == stamp
    assert queue.claim("w1", kinds=("timestamp",)) is None
    assert queue.claim("w1").job_id == capture  # type: ignore[union-attr]


def test_concurrent_claims_never_hand_out_a_job_twice(any_db: Database) -> None:
    queue = make(any_db)
    ids = enqueue(queue, 40)
    claimed: list[str] = []
    lock = threading.Lock()

    def drain(name: str) -> None:
        while (claim := queue.claim(name)) is not None:
            with lock:
                claimed.append(claim.job_id)

    threads = [threading.Thread(target=drain, args=(f"w{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(ids)


def test_complete_is_fenced_by_attempt(any_db: Database) -> None:
    queue = make(any_db)
    enqueue(queue)
    stale = queue.claim("slow-worker")
    assert stale is not None
    expire_leases(any_db)
    assert queue.reap() == 1
    fresh = queue.claim("other-worker")
    assert fresh is not None and fresh.attempt == 2
    with pytest.raises(LeaseLost), any_db.session() as session:
        queue.complete(session, stale)
    assert not queue.heartbeat(stale)
    with any_db.session() as session:
        queue.complete(session, fresh)
    assert queue.counts()["complete"] == 1


def test_heartbeat_extends_lease_so_reaper_leaves_it(any_db: Database) -> None:
    queue = make(any_db, lease=5)
    enqueue(queue)
    claim = queue.claim("w")
    assert claim is not None
    assert queue.heartbeat(claim, progress=50)
    assert queue.reap() == 0
    with any_db.session() as session:
        job = session.get(Job, claim.job_id)
        assert job is not None and job.progress == 50
        assert job.lease_expires_at is not None and job.lease_expires_at > utcnow()


def test_poison_job_fails_after_max_attempts(any_db: Database) -> None:
    queue = make(any_db, max_attempts=2)
    (job_id,) = enqueue(queue)
    failed_ids: list[list[str]] = []
    for _ in range(2):
        assert queue.claim("crashy") is not None
        expire_leases(any_db)
        queue.reap(lambda session, ids: failed_ids.append(ids))
    assert queue.claim("crashy") is None
    assert failed_ids == [[job_id]]
    with any_db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.state == "failed" and job.attempts == 2
        assert "lease expired" in job.error


def test_retryable_failure_backs_off_then_fails_for_good(any_db: Database) -> None:
    queue = make(any_db, max_attempts=2)
    (job_id,) = enqueue(queue)
    claim = queue.claim("w")
    assert claim is not None
    with any_db.session() as session:
        assert queue.fail(session, claim, "flaky", retry=True) == "queued"
    assert queue.claim("w") is None  # backing off
    with any_db.session() as session:
        session.execute(update(Job).values(run_after=utcnow()))
    claim = queue.claim("w")
    assert claim is not None and claim.attempt == 2
    with any_db.session() as session:
        assert queue.fail(session, claim, "flaky again", retry=True) == "failed"
        job = session.get(Job, job_id)
        assert job is not None and job.error == "flaky again"


def test_full_queue_refuses_with_retry_after(any_db: Database) -> None:
    queue = make(any_db, max_length=3)
    enqueue(queue, 3)
    with pytest.raises(TooManyRequests) as refused, any_db.session() as session:
        queue.check_capacity(session)
    assert refused.value.retry_after


def test_enqueue_claimed_starts_working_and_is_reaped_if_abandoned(any_db: Database) -> None:
    queue = make(any_db)
    with any_db.session() as session:
        job = queue.enqueue(session, "test", {}, claimed_by="api-process")
    assert job.state == "working" and job.attempts == 1
    assert queue.claim("w") is None
    expire_leases(any_db)
    assert queue.reap() == 1
    claim = queue.claim("w")
    assert claim is not None and claim.attempt == 2


def test_run_after_delays_a_job(any_db: Database) -> None:
    queue = make(any_db)
    enqueue(queue, run_after=utcnow() + timedelta(seconds=0.3))
    assert queue.claim("w") is None
    time.sleep(0.35)
    assert queue.claim("w") is not None
