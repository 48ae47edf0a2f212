"""The `jobs` table is the queue.

A job moves queued → working → complete | failed. `claim` takes the oldest due job in one atomic
statement (FOR UPDATE SKIP LOCKED on PostgreSQL; on SQLite the UPDATE itself holds the write lock)
and bumps `attempts`; that attempt number fences every later write, so a worker whose lease expired
and was reaped cannot complete or fail the job any more. Payloads are JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select, text, update
from sqlalchemy.orm import Session

from snapshotd.errors import TooManyRequests
from snapshotd.store.db import ENQUEUED, Database, on_postgres, rowcount
from snapshotd.store.models import Job, utcnow
from snapshotd.store.notify import CHANNEL

TERMINAL = ("complete", "failed")


class LeaseLost(Exception):
    """The job was reaped or finished by someone else; this worker's result must be dropped.
    Only workers see it: no request ever waits on a lease."""


@dataclass(frozen=True)
class Claim:
    job_id: str
    kind: str
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    org_id: str | None


class JobQueue:
    def __init__(
        self,
        db: Database,
        *,
        lease_seconds: int = 30,
        max_attempts: int = 3,
        max_length: int = 1000,
    ) -> None:
        self.db = db
        self.lease = timedelta(seconds=lease_seconds)
        self.max_attempts = max_attempts
        self.max_length = max_length

    def check_capacity(self, session: Session) -> None:
        queued = session.scalar(select(func.count()).select_from(Job).where(Job.state == "queued"))
        if (queued or 0) >= self.max_length:
            raise TooManyRequests(
                f"the capture queue is full ({queued} jobs waiting); try again shortly",
                retry_after=10,
            )

    def enqueue(
        self,
        session: Session,
        kind: str,
        payload: dict[str, Any],
        *,
        org_id: str | None = None,
        max_attempts: int | None = None,
        run_after: datetime | None = None,
        claimed_by: str | None = None,
        agent_id: int | None = None,
    ) -> Job:
        """Adds a job in the caller's transaction; `claimed_by` starts it claimed (attempt 1)."""
        now = utcnow()
        job = Job(
            kind=kind,
            payload=payload,
            org_id=org_id,
            agent_id=agent_id,
            max_attempts=max_attempts or self.max_attempts,
            run_after=run_after or now,
            created_at=now,
            updated_at=now,
        )
        if claimed_by:
            job.state, job.attempts = "working", 1
            job.lease_owner, job.lease_expires_at = claimed_by, now + self.lease
        session.add(job)
        session.flush()
        if not claimed_by:
            session.info[ENQUEUED] = True
            if on_postgres(session):
                # Delivered at commit to every LISTENing worker (store/notify.py).
                session.execute(text(f"NOTIFY {CHANNEL}"))
        return job

    def claim(
        self, worker_id: str, agent_id: int | None = None, kinds: Collection[str] = ()
    ) -> Claim | None:
        """The oldest due job this worker may run: any job for no agent in particular, and the
        jobs of its own agent (host); only of `kinds` when given."""
        now = utcnow()
        mine: ColumnElement[bool] = Job.agent_id.is_(None)
        if agent_id is not None:
            mine = or_(mine, Job.agent_id == agent_id)
        if kinds:
            mine = and_(mine, Job.kind.in_(kinds))
        candidate = (
            select(Job.id)
            .where(Job.state == "queued", Job.run_after <= now, mine)
            .order_by(Job.run_after, Job.id)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        statement = (
            update(Job)
            .where(Job.id == candidate, Job.state == "queued")
            .values(
                state="working",
                attempts=Job.attempts + 1,
                lease_owner=worker_id,
                lease_expires_at=now + self.lease,
                updated_at=now,
            )
            .returning(Job.id, Job.kind, Job.payload, Job.attempts, Job.max_attempts, Job.org_id)
        )
        with self.db.engine.begin() as connection:
            row = connection.execute(statement).first()
        if row is None:
            return None
        return Claim(row.id, row.kind, row.payload, row.attempts, row.max_attempts, row.org_id)

    def _fenced(self, claim: Claim) -> Any:
        return (Job.id == claim.job_id, Job.attempts == claim.attempt, Job.state == "working")

    def heartbeat(self, claim: Claim, *, progress: int | None = None) -> bool:
        """Renews the lease; False means it was lost and the worker should stop."""
        now = utcnow()
        values: dict[str, Any] = {"lease_expires_at": now + self.lease, "updated_at": now}
        if progress is not None:
            values["progress"] = progress
        with self.db.engine.begin() as connection:
            updated = rowcount(connection, update(Job).where(*self._fenced(claim)).values(**values))
        return updated == 1

    def hold(self, session: Session, claim: Claim) -> None:
        """Checks inside the caller's transaction that the claim still holds the job, or raises
        LeaseLost. The fenced update locks the job row until that transaction ends, so the job
        cannot be reaped and handed to another worker between this check and the caller's
        writes: call it first in any transaction that writes on the job's behalf."""
        now = utcnow()
        values = {"lease_expires_at": now + self.lease, "updated_at": now}
        held = update(Job).where(*self._fenced(claim)).values(**values)
        if rowcount(session, held) != 1:
            raise LeaseLost(f"job {claim.job_id} attempt {claim.attempt} no longer holds its lease")

    def complete(self, session: Session, claim: Claim) -> None:
        """Marks the job complete inside the caller's transaction, or raises LeaseLost."""
        now = utcnow()
        updated = rowcount(
            session,
            update(Job)
            .where(*self._fenced(claim))
            .values(
                state="complete", progress=100, lease_owner=None, updated_at=now, finished_at=now
            ),
        )
        if updated != 1:
            raise LeaseLost(f"job {claim.job_id} attempt {claim.attempt} no longer holds its lease")

    def fail(self, session: Session, claim: Claim, error: str, *, retry: bool) -> str:
        """Fails this attempt; returns the job's new state ("queued" again, or "failed")."""
        now = utcnow()
        final = not retry or claim.attempt >= claim.max_attempts
        values: dict[str, Any] = {"error": error[:2000], "lease_owner": None, "updated_at": now}
        if final:
            values.update(state="failed", finished_at=now)
        else:
            backoff = timedelta(seconds=min(60, 2 ** (claim.attempt - 1)))
            values.update(state="queued", run_after=now + backoff)
        if rowcount(session, update(Job).where(*self._fenced(claim)).values(**values)) != 1:
            raise LeaseLost(f"job {claim.job_id} attempt {claim.attempt} no longer holds its lease")
        return "failed" if final else "queued"

    def reap(self, on_failed: Callable[[Session, list[str]], None] | None = None) -> int:
        """Returns expired leases to the queue; jobs out of attempts fail (poison jobs).

        A job row locked by an open transaction is skipped, not waited for: its worker is
        writing on the job's behalf (under `hold`, `complete` or `fail`) and may be frozen or
        cut off with the transaction open, which must not stall reaping of every other job."""
        now = utcnow()
        expired = (
            select(Job.id)
            .where(Job.state == "working", Job.lease_expires_at < now)
            .with_for_update(skip_locked=True)
        )
        with self.db.session() as session:
            rows = session.execute(
                update(Job)
                .where(Job.id.in_(expired), Job.state == "working")
                .values(
                    state=case((Job.attempts >= Job.max_attempts, "failed"), else_="queued"),
                    finished_at=case((Job.attempts >= Job.max_attempts, now), else_=None),
                    error="the worker running this job stopped responding (lease expired)",
                    lease_owner=None,
                    updated_at=now,
                )
                .returning(Job.id, Job.state)
            ).all()
            failed = [row.id for row in rows if row.state == "failed"]
            if failed and on_failed:
                on_failed(session, failed)
            return len(rows)

    def get(self, session: Session, job_id: str) -> Job | None:
        return session.get(Job, job_id)

    def counts(self) -> dict[str, int]:
        with self.db.session() as session:
            rows = session.execute(select(Job.state, func.count()).group_by(Job.state)).all()
        counts = {"queued": 0, "working": 0, "complete": 0, "failed": 0}
        counts.update({state: int(n) for state, n in rows})
        return counts
