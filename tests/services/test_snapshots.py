"""Snapshot use-cases against SQLite and PostgreSQL: the same contract on both."""

from __future__ import annotations

import pytest

from snapshotd.config import Settings
from snapshotd.engines.capture import CapturedArtifact, CaptureResult
from snapshotd.errors import Conflict, NotFound
from snapshotd.services.accounts import ensure_org
from snapshotd.services.capture_request import CaptureRequest
from snapshotd.services.snapshots import Snapshots
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from snapshotd.store.queue import JobQueue


@pytest.fixture
def service(any_db: Database, settings: Settings, blobs: FileBlobStore) -> Snapshots:
    return Snapshots(settings, any_db, JobQueue(any_db), blobs)


def org(db: Database, slug: str) -> str:
    with db.session() as session:
        return ensure_org(session, slug).id


def test_create_run_finish_and_read_back(service: Snapshots, any_db: Database) -> None:
    acme = org(any_db, "acme")
    created = service.create_page(acme, CaptureRequest(url="https://example.org", width=900))
    assert created.status == "queued" and created.options == {
        "url": "https://example.org",
        "width": 900,
    }
    claim = service.queue.claim("w")
    assert claim is not None
    started = service.jobs.start(claim)
    assert started is not None and started.status == "working"
    assert started.options["width"] == 900
    result = CaptureResult(
        [CapturedArtifact("image", b"\x89PNG pretend", "image/png", 900, 800)],
        {"final_url": "https://example.org/"},
    )
    service.jobs.finish(claim, result)
    snapshot, job = service.get_with_job(acme, created.id)
    assert snapshot.status == "success" and job is not None and job.state == "complete"
    assert snapshot.meta["final_url"] == "https://example.org/"
    artifact, stream = service.open_artifact(acme, created.id, "image")
    with stream:
        assert stream.read() == b"\x89PNG pretend"
    assert artifact.width == 900


def test_tenancy_idempotency_pagination_and_delete(service: Snapshots, any_db: Database) -> None:
    acme, rival = org(any_db, "acme"), org(any_db, "rival")
    options = CaptureRequest(url="https://example.org")
    first = service.create_page(acme, options, idempotency_key="k1")
    assert service.create_page(acme, options, idempotency_key="k1").id == first.id
    assert service.create_page(rival, options, idempotency_key="k1").id != first.id
    with pytest.raises(Conflict):
        service.create_page(acme, CaptureRequest(url="https://example.com"), idempotency_key="k1")
    with pytest.raises(NotFound):
        service.get(rival, first.id)
    for _ in range(4):
        service.create_page(acme, options)
    page = service.list(acme, limit=3)
    assert len(page.items) == 3 and page.next_cursor
    rest = service.list(acme, limit=3, cursor=page.next_cursor)
    assert len(rest.items) == 2 and rest.next_cursor is None
    with pytest.raises(NotFound):
        service.delete(rival, first.id)
    service.delete(acme, first.id)
    with pytest.raises(NotFound):
        service.get(acme, first.id)


def test_failure_paths_update_the_snapshot(service: Snapshots, any_db: Database) -> None:
    acme = org(any_db, "acme")
    created = service.create_page(acme, CaptureRequest(url="https://example.org"))
    claim = service.queue.claim("w")
    assert claim is not None
    assert service.jobs.fail(claim, "browser crashed", retry=True) == "queued"
    assert "retrying" in service.get(acme, created.id).status_message
    with any_db.session() as session:
        service.jobs.fail_reaped(session, [created.job_id or ""])
    snapshot = service.get(acme, created.id)
    assert snapshot.status == "failed" and "stopped responding" in snapshot.status_message
