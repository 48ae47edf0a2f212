"""The snapshot read behind `GET /api/v1/snapshots/{id}`, the route clients poll until a job ends.

It is most of an API process's traffic, so it skips the ORM: one statement, built once at import,
joins the snapshot, its job and its artifacts; it runs outside any transaction (`Database.read`),
and each row becomes a small frozen view. The views carry the attributes of the models that the
API's bodies read, so the same body functions serve both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, select

from snapshotd.errors import NotFound
from snapshotd.services.liveness import is_live
from snapshotd.store.db import Database
from snapshotd.store.models import Artifact, Job, Snapshot


@dataclass(frozen=True, slots=True)
class ArtifactView:
    role: str
    media_type: str
    sha256: str
    size: int
    width: int | None
    height: int | None


@dataclass(frozen=True, slots=True)
class JobView:
    id: str
    state: str
    attempts: int
    max_attempts: int
    progress: int
    error: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class SnapshotView:
    id: str
    kind: str
    status: str
    status_message: str
    url: str
    options: dict[str, Any]
    meta: dict[str, Any]
    job_id: str | None
    created_at: datetime
    completed_at: datetime | None
    expires_at: datetime | None
    archived_at: datetime | None
    archived_by: str | None
    archived_reason: str | None
    legal_hold: bool
    hold_reason: str | None
    held_by: str | None
    held_at: datetime | None
    artifacts: list[ArtifactView]
    job: JobView | None


def _names(view: type) -> list[str]:
    return [f.name for f in fields(view) if f.name not in ("artifacts", "job")]


def _columns(model: type, view: type, prefix: str) -> list[Any]:
    return [getattr(model, name).label(prefix + name) for name in _names(view)]


# The artifact columns a view holds, in its order.
ARTIFACT_FIELDS = tuple(_names(ArtifactView))
_SNAPSHOT_NAMES = _names(SnapshotView)
_SNAPSHOT = _columns(Snapshot, SnapshotView, "")
_JOB = _columns(Job, JobView, "job_")
_ARTIFACT = _columns(Artifact, ArtifactView, "artifact_")
_JOB_AT = len(_SNAPSHOT)
_ARTIFACT_AT = _JOB_AT + len(_JOB)

# One row per artifact (or one row without any). Filtering on the organization here makes
# another organization's snapshot indistinguishable from a missing one.
READ = (
    select(*_SNAPSHOT, *_JOB, *_ARTIFACT)
    .outerjoin(Job, Job.id == Snapshot.job_id)
    .outerjoin(Artifact, Artifact.snapshot_id == Snapshot.id)
    .where(Snapshot.id == bindparam("snapshot_id"), Snapshot.org_id == bindparam("org_id"))
    .order_by(Artifact.id)
)


def read_snapshot(db: Database, org_id: str, snapshot_id: str) -> SnapshotView:
    """The organization's live snapshot with its job and artifacts; else NotFound."""
    rows = db.read(READ, {"snapshot_id": snapshot_id, "org_id": org_id})
    if not rows:
        raise NotFound(f"no snapshot {snapshot_id}")
    snapshot = _view(rows)
    if not is_live(snapshot):
        raise NotFound(f"no snapshot {snapshot_id}")
    return snapshot


class SnapshotReads:
    def __init__(self, db: Database) -> None:
        self.db = db

    def read(self, org_id: str, snapshot_id: str) -> SnapshotView:
        return read_snapshot(self.db, org_id, snapshot_id)

    async def read_live(self, org_id: str, snapshot_id: str) -> SnapshotView:
        """`read` from a coroutine: inline on SQLite, where a read is a short local call, and on
        a worker thread on PostgreSQL, where it waits on the network."""
        if self.db.is_postgres:
            return await asyncio.to_thread(read_snapshot, self.db, org_id, snapshot_id)
        return read_snapshot(self.db, org_id, snapshot_id)


def _view(rows: Sequence[Row[Any]]) -> SnapshotView:
    first = tuple(rows[0])
    job_values = first[_JOB_AT:_ARTIFACT_AT]
    job = JobView(*job_values) if job_values[0] is not None else None
    artifacts = [ArtifactView(*row[_ARTIFACT_AT:]) for row in rows if row[_ARTIFACT_AT] is not None]
    values = dict(zip(_SNAPSHOT_NAMES, first, strict=False))
    return SnapshotView(**values, artifacts=artifacts, job=job)
