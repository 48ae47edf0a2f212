"""The sweeper: deletes expired snapshots (never one under legal hold), expired share links, old
rate-limit events, measurements past their retention, and the blobs no remaining artifact refers
to.

Expiry is already enforced on every read; the sweep only reclaims space. A blob is content-addressed
and may be shared by several snapshots, so it is deleted only when no artifact row refers to it any
more and it was not written within `blob_grace_seconds` (a capture storing the same bytes right now
adds its row just after writing the blob).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from snapshotd.config import Settings
from snapshotd.services import audit
from snapshotd.services.metrics import Metrics
from snapshotd.services.snapshots import delete_unreferenced, live_clause
from snapshotd.store.blobs import BlobStore
from snapshotd.store.db import Database, rowcount
from snapshotd.store.models import Artifact, RateEvent, Share, Snapshot, utcnow

BATCH = 500
RATE_EVENT_HORIZON = timedelta(days=32)


@dataclass
class SweepReport:
    snapshots: int = 0
    shares: int = 0
    blobs: int = 0
    rate_events: int = 0
    measurements: int = 0

    def __bool__(self) -> bool:
        return bool(self.snapshots or self.shares or self.blobs or self.measurements)

    def __str__(self) -> str:
        return (
            f"deleted {self.snapshots} snapshots, {self.shares} share links, "
            f"{self.blobs} blobs, {self.rate_events} rate-limit events, "
            f"{self.measurements} measurements"
        )


def sweep(
    settings: Settings, db: Database, blobs: BlobStore, *, now: datetime | None = None
) -> SweepReport:
    now = now or utcnow()
    report = SweepReport()
    while True:
        deleted, digests = _delete_expired_batch(db, now)
        report.snapshots += deleted
        report.blobs += delete_unreferenced(db, blobs, digests, settings.blob_grace_seconds)
        if deleted < BATCH:
            break
    with db.session() as session:
        report.shares = rowcount(session, delete(Share).where(Share.expires_at <= now))
        report.rate_events = rowcount(
            session, delete(RateEvent).where(RateEvent.at <= now - RATE_EVENT_HORIZON)
        )
    if settings.measurement_retention_days:
        horizon = now - timedelta(days=settings.measurement_retention_days)
        report.measurements = Metrics(db).prune(int(horizon.timestamp()))
    return report


def _delete_expired_batch(db: Database, now: datetime) -> tuple[int, set[str]]:
    with db.session() as session:
        expired = list(
            session.scalars(
                select(Snapshot).where(~live_clause(now)).order_by(Snapshot.id).limit(BATCH)
            )
        )
        if not expired:
            return 0, set()
        ids = [snapshot.id for snapshot in expired]
        digests = set(session.scalars(select(Artifact.sha256).where(Artifact.snapshot_id.in_(ids))))
        for snapshot in expired:
            audit.record(
                session,
                snapshot.org_id,
                audit.SYSTEM,
                "deleted",
                "snapshot",
                snapshot.id,
                reason="expired",
            )
        session.execute(delete(Artifact).where(Artifact.snapshot_id.in_(ids)))
        session.execute(delete(Share).where(Share.snapshot_id.in_(ids)))
        session.execute(delete(Snapshot).where(Snapshot.id.in_(ids)))
    return len(ids), digests
