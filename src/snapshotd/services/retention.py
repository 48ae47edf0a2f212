"""The sweeper: deletes expired snapshots (never one under legal hold), expired share links, old
rate-limit events, measurements and their roll-ups past their retention, the blobs no remaining
artifact refers to, and what interrupted writes left in the blob store.

Expiry is already enforced on every read; the sweep only reclaims space. A blob is content-addressed
and may be shared by several snapshots, so it is deleted only when no artifact row refers to it any
more and it was not written within `blob_grace_seconds`.

Orphans. A blob can lose its last reference, or never get one, without any snapshot expiring: a
worker killed between storing its blobs and committing their rows, a capture whose completion was
refused because its lease had been lost, a manifest signed again after change detection (the first
manifest's blob), a blob the grace spared when its snapshot was swept. `collect_orphans` finds
them by listing the store itself.

Marking. The store's listing is streamed, blobs younger than the grace are dropped on the spot, and
the rest are checked against the artifacts table `BATCH` at a time with `sha256 IN (…)`, which the
index on `artifacts.sha256` answers. Memory stays at one batch whatever the size of the store or of
the table, and each batch is its own short transaction, so a listing of millions of keys holds no
snapshot open on PostgreSQL nor a lock on SQLite. Loading every referenced digest first would grow
with the table and be stale by the end of a long listing anyway; a merge of two sorted streams
would need a transaction open for the whole listing.

Cost. A periodic sweep lists only one shard of the store: the blobs whose digest starts with the
two hex digits `orphan_shard` picks from the clock, so the whole store is covered once every 256
sweep intervals (about 21 hours at the default of 300 s), the same shard by every worker sweeping
in the same interval. `snapshotd sweep` lists everything.

Safety while captures write and other workers sweep. Every writer stores a blob before it commits
the row that refers to it, and a `put` of bytes already stored restarts their age; the grace is far
longer than the seconds between the two. So a blob about to be referenced is either young, and
skipped, or already referenced, and the batch query sees it. `delete_unreferenced` asks the age
again after that query, just before deleting, so bytes a capture stored again after the listing
are kept too. What is left is a capture storing an orphan's exact bytes again in the instant
between that last look and the delete, which a store without conditional deletes cannot rule out.
Several sweepers may take the same orphan: deleting is idempotent, and each may count it.

The store must belong to this database alone: blobs that only another deployment's database refers
to look like orphans here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice

from sqlalchemy import delete, exists, select

from snapshotd.config import Settings
from snapshotd.services import audit
from snapshotd.services.blob_gc import delete_unreferenced
from snapshotd.services.liveness import live_clause
from snapshotd.services.metrics import Metrics
from snapshotd.services.rollups import Rollups
from snapshotd.store.blobs import BlobStore
from snapshotd.store.db import Database, rowcount
from snapshotd.store.models import Artifact, RateEvent, Share, Snapshot, utcnow

BATCH = 500
RATE_EVENT_HORIZON = timedelta(days=32)
ORPHAN_SHARDS = 256


@dataclass
class SweepReport:
    snapshots: int = 0
    shares: int = 0
    blobs: int = 0
    orphans: int = 0
    unfinished: int = 0
    rate_events: int = 0
    measurements: int = 0
    rollups: int = 0

    def __bool__(self) -> bool:
        return bool(
            self.snapshots
            or self.shares
            or self.blobs
            or self.orphans
            or self.unfinished
            or self.measurements
            or self.rollups
        )

    def __str__(self) -> str:
        return (
            f"deleted {self.snapshots} snapshots, {self.shares} share links, "
            f"{self.blobs} blobs, {self.orphans} orphaned blobs, "
            f"{self.unfinished} unfinished writes, {self.rate_events} rate-limit events, "
            f"{self.measurements} measurements, {self.rollups} measurement roll-ups"
        )


def sweep(
    settings: Settings,
    db: Database,
    blobs: BlobStore,
    *,
    now: datetime | None = None,
    every_shard: bool = False,
) -> SweepReport:
    """One sweep; `every_shard` lists the whole blob store for orphans instead of this interval's
    shard (what an operator running `snapshotd sweep` by hand expects)."""
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
    horizons = {
        resolution: int((now - timedelta(days=days)).timestamp())
        for resolution, days in settings.rollup_retention_days.items()
        if days
    }
    if horizons:
        report.rollups = Rollups(db).prune(horizons)
    shard = "" if every_shard else orphan_shard(now, settings.sweep_interval_seconds)
    grace = settings.blob_grace_seconds
    report.orphans = collect_orphans(db, blobs, grace, prefix=shard)
    report.unfinished = blobs.clear_unfinished(grace, prefix=shard)
    return report


def orphan_shard(now: datetime, interval: int) -> str:
    """The first two hex digits of the digests a periodic sweep at `now` looks at. Derived from
    the clock, the next shard each `interval`, so a full pass needs no coordination: workers
    sweeping within the same interval list the same shard rather than racing through the store."""
    return f"{int(now.timestamp() // interval) % ORPHAN_SHARDS:02x}"


def collect_orphans(db: Database, blobs: BlobStore, grace: int, *, prefix: str = "") -> int:
    """Deletes the blobs whose digest starts with `prefix` that no artifact refers to and that
    were not written in the last `grace` seconds; returns how many.

    Nothing is collected while the artifacts table is empty: that is what a sweep pointed at the
    wrong database (a fresh default SQLite file, say) sees, and emptying a store that is in use is
    never the right answer to it. A deployment with no snapshot at all keeps its orphans until it
    has one."""
    with db.session() as session:
        if not session.scalar(select(exists().select_from(Artifact))):
            return 0
    removed = 0
    old = (digest for digest, age in blobs.scan(prefix) if age >= grace)
    for batch in _batches(old, BATCH):
        removed += delete_unreferenced(db, blobs, set(batch), grace)
    return removed


def _batches(items: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


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
