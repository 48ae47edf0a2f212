"""block_ads and block_trackers end to end: the native API, a worker, real Chromium."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from snapshotd.config import Settings
from snapshotd.engines.stack import capture_stack
from snapshotd.http.app import create_app
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from snapshotd.worker import Worker, WorkerThreads
from tests.adpages import AD_HOST, HOSTS, TRACKER_HOST, AdServer
from tests.test_capture_e2e import create, wait


@pytest.fixture
def ads() -> Iterator[AdServer]:
    with AdServer() as server:
        yield server


@pytest.fixture
def blocking_api(settings: Settings, db: Database, blobs: FileBlobStore) -> Iterator[TestClient]:
    """The API with a worker whose guard knows the listed names as this machine's loopback."""
    worker = Worker(settings, db, blobs, stack=functools.partial(capture_stack, hosts=HOSTS))
    threads = WorkerThreads([worker])
    threads.start()
    try:
        with TestClient(create_app(settings, db=db, blobs=blobs, worker=worker)) as client:
            yield client
    finally:
        threads.stop(timeout=30)


def test_a_snapshot_with_block_ads_records_what_was_blocked_and_hidden(
    blocking_api: TestClient, auth: dict[str, str], ads: AdServer
) -> None:
    page = ads.url("127.0.0.1", "/news")
    created = create(blocking_api, auth, url=page, block_ads=True)
    assert created["options"]["block_ads"] is True
    done = wait(blocking_api, auth, created["id"])
    assert done["status"] == "success", done["status_message"]
    meta = done["metadata"]
    assert meta["blocked_requests"] == [{"url": ads.url(AD_HOST, "/banner"), "reason": "ad"}]
    assert meta["hidden_by_filters"]["elements"] == 2  # the ad's frame and the `.ADBox` slot
    assert not ads.requested(AD_HOST) and ads.requested(TRACKER_HOST)
