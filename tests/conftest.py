from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from snapshotd.config import Settings
from snapshotd.http.app import create_app
from snapshotd.services.accounts import Accounts
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from snapshotd.worker import Worker, WorkerThreads
from tests.cluster import fresh_database
from tests.pages import PageServer
from tests.servers import serving


@pytest.fixture(scope="session")
def canary() -> Iterator[PageServer]:
    """A server on a loopback address outside the test allowlist: it must never see a request."""
    with PageServer("127.0.0.2") as server:
        yield server


@pytest.fixture(scope="session")
def pages(canary: PageServer) -> Iterator[PageServer]:
    with PageServer("127.0.0.1", canary=canary.url) as server:
        yield server


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        egress_allow=["127.0.0.1/32"],
        job_lease_seconds=5,
        poll_interval_seconds=0.05,
        capture_timeout_ms=10_000,
    )


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database.from_url(settings.resolved_database_url)
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Database]:
    """The same contract, run against both metadata databases."""
    sqlite = contextlib.nullcontext(settings.resolved_database_url)
    with sqlite if request.param == "sqlite" else fresh_database() as url:
        database = Database.from_url(url)
        database.migrate()
        yield database
        database.dispose()


@pytest.fixture
def blobs(settings: Settings) -> FileBlobStore:
    return FileBlobStore(settings.blobs_dir)


@pytest.fixture
def worker(settings: Settings, db: Database, blobs: FileBlobStore) -> Iterator[Worker]:
    runner = Worker(settings, db, blobs)
    threads = WorkerThreads([runner])
    threads.start()
    yield runner
    threads.stop(timeout=30)


@pytest.fixture
def api(settings: Settings, db: Database, blobs: FileBlobStore) -> Iterator[TestClient]:
    """The API without a worker: requests queue jobs that nothing runs."""
    with TestClient(create_app(settings, db=db, blobs=blobs)) as client:
        yield client


@pytest.fixture
def live_api(
    settings: Settings, db: Database, blobs: FileBlobStore, worker: Worker
) -> Iterator[TestClient]:
    """The API with an in-process worker and real Chromium, as `snapshotd serve` runs it."""
    app = create_app(settings, db=db, blobs=blobs, worker=worker)
    with TestClient(app) as client:
        yield client


@pytest.fixture
def live_url(
    settings: Settings, db: Database, blobs: FileBlobStore, worker: Worker
) -> Iterator[str]:
    """`live_api` on a real uvicorn server, for clients that speak HTTP over a socket."""
    with serving(create_app(settings, db=db, blobs=blobs, worker=worker)) as url:
        yield url


@pytest.fixture
def queued_url(settings: Settings, db: Database, blobs: FileBlobStore) -> Iterator[str]:
    """No worker: snapshots stay queued."""
    with serving(create_app(settings, db=db, blobs=blobs)) as url:
        yield url


@pytest.fixture
def token(db: Database) -> str:
    return Accounts(db).create_token(org="acme", email="ops@acme.test", role="admin")


@pytest.fixture
def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
