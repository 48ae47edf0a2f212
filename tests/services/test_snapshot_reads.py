"""The fast snapshot read answers exactly what the ORM read answers, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text, update

from snapshotd.config import Settings
from snapshotd.engines.capture import CapturedArtifact, CaptureResult
from snapshotd.errors import NotFound
from snapshotd.http.native import snapshot_body
from snapshotd.services.accounts import ensure_org
from snapshotd.services.capture_request import CaptureRequest
from snapshotd.services.snapshot_reads import read_snapshot
from snapshotd.services.snapshots import Snapshots
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from snapshotd.store.models import Snapshot, utcnow
from snapshotd.store.queue import JobQueue


@pytest.fixture
def service(any_db: Database, settings: Settings, blobs: FileBlobStore) -> Snapshots:
    return Snapshots(settings, any_db, JobQueue(any_db), blobs)


def org(db: Database, slug: str) -> str:
    with db.session() as session:
        return ensure_org(session, slug).id


def finished_capture(service: Snapshots, org_id: str) -> str:
    created = service.create_page(org_id, CaptureRequest(url="https://example.org", width=900))
    claim = service.queue.claim("w")
    assert claim is not None and service.jobs.start(claim) is not None
    result = CaptureResult(
        [
            CapturedArtifact("image", b"\x89PNG pretend", "image/png", 900, 800),
            CapturedArtifact("html", b"<html></html>", "text/html", None, None),
        ],
        {"final_url": "https://example.org/", "http_status": 200},
    )
    service.jobs.finish(claim, result)
    return created.id


def test_the_fast_read_matches_the_orm_read(service: Snapshots, any_db: Database) -> None:
    acme = org(any_db, "acme")
    captured = finished_capture(service, acme)
    queued = service.create_page(acme, CaptureRequest(url="https://example.com")).id
    for snapshot_id in (captured, queued):
        snapshot, job = service.get_with_job(acme, snapshot_id)
        view = read_snapshot(any_db, acme, snapshot_id)
        assert snapshot_body(view, view.job) == snapshot_body(snapshot, job)
    view = read_snapshot(any_db, acme, captured)
    assert [a.role for a in view.artifacts] == ["image", "html", "manifest"]
    assert view.job is not None and view.job.state == "complete" and view.status == "success"


def test_a_snapshot_without_a_job_or_artifacts(service: Snapshots, any_db: Database) -> None:
    acme = org(any_db, "acme")
    with any_db.session() as session:
        bare = Snapshot(org_id=acme, kind="upload", status="success")
        session.add(bare)
        session.flush()
        bare_id = bare.id
    view = read_snapshot(any_db, acme, bare_id)
    assert view.job is None and view.artifacts == []
    assert snapshot_body(view)["artifacts"] == []


def test_other_organizations_and_expired_snapshots_are_not_found(
    service: Snapshots, any_db: Database
) -> None:
    acme, rival = org(any_db, "acme"), org(any_db, "rival")
    snapshot_id = finished_capture(service, acme)
    with pytest.raises(NotFound):
        read_snapshot(any_db, rival, snapshot_id)
    with pytest.raises(NotFound):
        read_snapshot(any_db, acme, "snp_missing")
    past = utcnow() - timedelta(seconds=1)
    with any_db.session() as session:
        session.execute(update(Snapshot).where(Snapshot.id == snapshot_id).values(expires_at=past))
    with pytest.raises(NotFound):
        read_snapshot(any_db, acme, snapshot_id)
    with any_db.session() as session:
        session.execute(update(Snapshot).where(Snapshot.id == snapshot_id).values(legal_hold=True))
    assert read_snapshot(any_db, acme, snapshot_id).legal_hold


def test_a_connection_the_server_dropped_is_replaced(service: Snapshots, any_db: Database) -> None:
    if not any_db.is_postgres:
        pytest.skip("SQLite has no server to drop connections")
    acme = org(any_db, "acme")
    snapshot_id = finished_capture(service, acme)
    read_snapshot(any_db, acme, snapshot_id)  # the read pool now holds an open connection
    with any_db.session() as session:
        dropped = session.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
    assert dropped >= 1
    assert read_snapshot(any_db, acme, snapshot_id).id == snapshot_id
