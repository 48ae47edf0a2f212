"""Orphan blob collection by the sweeper, on SQLite and PostgreSQL (`any_db`), with the real folder
store and, where the store matters, the real SeaweedFS bucket too.

A blob is made "old" by moving its file's time back, or, in the bucket (whose clock cannot be
moved), by sweeping with no grace at all; nothing here sleeps.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from snapshotd.config import Settings
from snapshotd.engines.capture import CapturedArtifact, CaptureResult
from snapshotd.services.accounts import ensure_org
from snapshotd.services.capture_request import CaptureRequest
from snapshotd.services.retention import collect_orphans, orphan_shard, sweep
from snapshotd.services.snapshots import Snapshots
from snapshotd.store.blobs import BlobStore, FileBlobStore
from snapshotd.store.db import Database
from snapshotd.store.models import Artifact, Job, Snapshot, utcnow
from snapshotd.store.queue import Claim, JobQueue, LeaseLost
from tests.store.test_blobs import s3_store

HOUR = 3600.0


def graced(settings: Settings, seconds: int) -> Settings:
    return settings.model_copy(update={"blob_grace_seconds": seconds})


@pytest.fixture(params=["folder", "s3"])
def any_store(request: pytest.FixtureRequest, settings: Settings) -> BlobStore:
    if request.param == "folder":
        return FileBlobStore(settings.blobs_dir)
    return s3_store()


@pytest.fixture
def folder(settings: Settings) -> FileBlobStore:
    return FileBlobStore(settings.blobs_dir)


def service_for(settings: Settings, db: Database, store: BlobStore) -> Snapshots:
    return Snapshots(settings, db, JobQueue(db), store)


def result(*roles: str) -> CaptureResult:
    """A capture's output with random bytes for each role, so no two captures share a blob."""
    artifacts = [
        CapturedArtifact(role, secrets.token_bytes(256), "application/octet-stream", None, None)
        for role in roles
    ]
    return CaptureResult(artifacts, {"final_url": "https://example.org/"})


def claim_page(service: Snapshots) -> tuple[str, Claim]:
    with service.db.session() as session:
        org_id = ensure_org(session, "acme").id
    snapshot = service.create_page(org_id, CaptureRequest(url="https://example.org"))
    claim = service.queue.claim("worker-1")
    assert claim is not None and claim.payload["snapshot_id"] == snapshot.id
    service.jobs.start(claim)
    return snapshot.id, claim


def captured(service: Snapshots) -> str:
    """A page snapshot run to success the way a worker runs it: image, html and manifest rows."""
    snapshot_id, claim = claim_page(service)
    service.jobs.finish(claim, result("image", "html"))
    return snapshot_id


def digests_of(db: Database, snapshot_id: str) -> dict[str, str]:
    with db.session() as session:
        rows = session.execute(
            select(Artifact.role, Artifact.sha256).where(Artifact.snapshot_id == snapshot_id)
        )
        return {role: digest for role, digest in rows}


def backdate(settings: Settings, digest: str, seconds: float) -> None:
    path = settings.blobs_dir / digest[:2] / digest[2:4] / digest
    moment = time.time() - seconds
    os.utime(path, (moment, moment))


# -- what is collected and what is not ------------------------------------------------------------


def test_an_old_orphan_is_collected_and_a_snapshots_blobs_survive(
    settings: Settings, any_db: Database, any_store: BlobStore
) -> None:
    service = service_for(settings, any_db, any_store)
    snapshot_id = captured(service)
    kept = digests_of(any_db, snapshot_id)
    assert set(kept) == {"image", "html", "manifest"}
    orphan = any_store.put(secrets.token_bytes(512))  # stored, then its worker was killed

    young = sweep(graced(settings, 3600), any_db, any_store, every_shard=True)
    assert young.orphans == 0 and any_store.exists(orphan)

    report = sweep(graced(settings, 0), any_db, any_store, every_shard=True)
    assert report.orphans == 1 and "1 orphaned blobs" in str(report) and report
    assert not any_store.exists(orphan)
    assert all(any_store.exists(digest) for digest in kept.values())
    with any_db.session() as session:
        org_id = session.scalars(select(Snapshot.org_id)).one()
    _artifact, stream = service.open_artifact(org_id, snapshot_id, "image")
    with stream:
        assert len(stream.read()) == 256


def test_in_one_sweep_only_the_old_unreferenced_blob_goes(
    settings: Settings, any_db: Database, folder: FileBlobStore
) -> None:
    snapshot_id = captured(service_for(settings, any_db, folder))
    referenced = digests_of(any_db, snapshot_id)["image"]
    old, young = folder.put(b"old orphan"), folder.put(b"young orphan")
    backdate(settings, old, 2 * HOUR)
    backdate(settings, referenced, 2 * HOUR)

    report = sweep(graced(settings, 600), any_db, folder, every_shard=True)
    assert report.orphans == 1
    assert not folder.exists(old)
    assert folder.exists(young) and folder.exists(referenced)


def test_stale_temp_files_are_removed_and_young_ones_kept(
    settings: Settings, any_db: Database, folder: FileBlobStore
) -> None:
    digest = folder.put(b"a finished write")
    leaf = settings.blobs_dir / digest[:2] / digest[2:4]
    stale, young = leaf / ".tmp-killed", leaf / ".tmp-writing"
    stale.write_bytes(b"half of an artifact")
    young.write_bytes(b"an artifact being written")
    moment = time.time() - 2 * HOUR
    os.utime(stale, (moment, moment))

    report = sweep(graced(settings, 600), any_db, folder, every_shard=True)
    assert report.unfinished == 1 and "1 unfinished writes" in str(report)
    assert not stale.exists() and young.exists()


def test_the_blobs_of_a_capture_whose_lease_was_lost_are_collected(
    settings: Settings, any_db: Database, any_store: BlobStore
) -> None:
    service = service_for(settings, any_db, any_store)
    snapshot_id, first = claim_page(service)
    with any_db.session() as session:
        session.execute(
            update(Job)
            .where(Job.id == first.job_id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
    assert service.queue.reap() == 1
    second = service.queue.claim("worker-2")
    assert second is not None and second.attempt == first.attempt + 1

    late = result("image")
    with pytest.raises(LeaseLost):
        service.jobs.finish(first, late)  # stores its blobs, then fencing refuses the rows
    lost = hashlib.sha256(late.artifacts[0].data).hexdigest()
    assert any_store.exists(lost)
    service.jobs.finish(second, result("image"))
    winner = digests_of(any_db, snapshot_id)

    report = sweep(graced(settings, 0), any_db, any_store, every_shard=True)
    assert report.orphans == 1 and not any_store.exists(lost)
    assert all(any_store.exists(digest) for digest in winner.values())


def test_a_manifest_sealed_again_leaves_its_first_blob_to_the_sweeper(
    settings: Settings, any_db: Database, folder: FileBlobStore
) -> None:
    service = service_for(settings, any_db, folder)
    snapshot_id = captured(service)
    first = digests_of(any_db, snapshot_id)["manifest"]
    with any_db.session() as session:
        snapshot = session.get(Snapshot, snapshot_id)
        assert snapshot is not None
        snapshot.meta = {**snapshot.meta, "change": {"changed_percent": 12.5}}
        service.seal(session, snapshot)
    second = digests_of(any_db, snapshot_id)["manifest"]
    assert second != first

    report = sweep(graced(settings, 0), any_db, folder, every_shard=True)
    assert report.orphans == 1
    assert not folder.exists(first) and folder.exists(second)


# -- cost and safety -------------------------------------------------------------------------------


def test_a_periodic_sweep_lists_one_shard_and_the_next_interval_the_next(
    settings: Settings, any_db: Database, folder: FileBlobStore
) -> None:
    captured(service_for(settings, any_db, folder))
    orphan = folder.put(secrets.token_bytes(64))
    interval = settings.sweep_interval_seconds
    # A moment in the recent past whose interval is the orphan's shard: nothing is expired then.
    current = int(time.time() // interval)
    hit = current - (current - int(orphan[:2], 16)) % 256
    at = datetime.fromtimestamp(hit * interval, UTC)
    assert orphan_shard(at, interval) == orphan[:2]
    before = at - timedelta(seconds=interval)
    assert orphan_shard(before, interval) != orphan[:2]

    quick = graced(settings, 0)
    assert sweep(quick, any_db, folder, now=before).orphans == 0 and folder.exists(orphan)
    assert sweep(quick, any_db, folder, now=at).orphans == 1 and not folder.exists(orphan)


def test_nothing_is_collected_while_no_artifact_exists(
    settings: Settings, any_db: Database, folder: FileBlobStore
) -> None:
    """What a sweep pointed at the wrong, empty database would see: the store is left whole."""
    orphan = folder.put(b"a blob some other database refers to")
    assert sweep(graced(settings, 0), any_db, folder, every_shard=True).orphans == 0
    assert folder.exists(orphan)


class Interleaved(FileBlobStore):
    """The folder store, with something done between listing the blobs and handing them over:
    the moment another process acts while a sweeper works through a long listing."""

    def __init__(self, root: Path, meanwhile: Callable[[], None]) -> None:
        super().__init__(root)
        self.meanwhile = meanwhile

    def scan(self, prefix: str = "") -> Iterator[tuple[str, float]]:
        listing = list(super().scan(prefix))
        self.meanwhile()
        yield from listing


def test_a_blob_stored_again_after_the_listing_is_kept(
    settings: Settings, any_db: Database
) -> None:
    captured(service_for(settings, any_db, FileBlobStore(settings.blobs_dir)))
    data = secrets.token_bytes(64)
    store = Interleaved(settings.blobs_dir, lambda: store.put(data))  # a capture, same bytes
    orphan = store.put(data)
    backdate(settings, orphan, 2 * HOUR)

    assert collect_orphans(any_db, store, 600) == 0
    assert store.exists(orphan)


def test_a_row_committed_after_the_listing_keeps_its_blob(
    settings: Settings, any_db: Database
) -> None:
    snapshot_id = captured(service_for(settings, any_db, FileBlobStore(settings.blobs_dir)))
    data = secrets.token_bytes(64)

    def commit_row() -> None:
        with any_db.session() as session:
            session.add(
                Artifact(
                    snapshot_id=snapshot_id,
                    role="diff",
                    sha256=digest,
                    size=len(data),
                    media_type="image/png",
                )
            )

    store = Interleaved(settings.blobs_dir, commit_row)
    digest = store.put(data)
    backdate(settings, digest, 2 * HOUR)

    assert collect_orphans(any_db, store, 600) == 0
    assert store.exists(digest)


def test_several_sweepers_at_once(settings: Settings, any_db: Database) -> None:
    snapshot_id = captured(service_for(settings, any_db, FileBlobStore(settings.blobs_dir)))
    kept = digests_of(any_db, snapshot_id)
    orphans = {FileBlobStore(settings.blobs_dir).put(secrets.token_bytes(64)) for _ in range(40)}
    quick = graced(settings, 0)
    start = threading.Barrier(3)
    reports: list[int] = []
    failures: list[BaseException] = []

    def sweeper() -> None:
        start.wait()
        try:
            store = FileBlobStore(settings.blobs_dir)  # one store per worker process
            reports.append(sweep(quick, any_db, store, every_shard=True).orphans)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=sweeper) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures and len(reports) == 3
    assert sum(reports) >= len(orphans)
    store = FileBlobStore(settings.blobs_dir)
    assert not any(store.exists(digest) for digest in orphans)
    assert all(store.exists(digest) for digest in kept.values())
