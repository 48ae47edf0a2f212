"""`GET /api/v1/snapshots/{id}` answered in front of the framework (http/fast_read.py): the same
bytes as the route, only for the common case, and every request counted once. SQLite and
PostgreSQL through `any_db`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from starlette.types import Receive, Scope, Send

from snapshotd.config import Settings
from snapshotd.http.app import create_app
from snapshotd.http.deps import Services
from snapshotd.http.fast_read import FastSnapshotRead
from snapshotd.services import accounts
from snapshotd.services.capture_request import CaptureRequest
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from snapshotd.store.models import Snapshot, utcnow
from tests.services.test_snapshot_reads import finished_capture

PASSED_ON = 599


class Route:
    """Stands where the framework would: records what the fast path passed on."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.paths.append(scope["path"])
        await send({"type": "http.response.start", "status": PASSED_ON, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture
def app_and_services(
    settings: Settings, any_db: Database, blobs: FileBlobStore
) -> Iterator[tuple[TestClient, Services]]:
    app = create_app(settings, db=any_db, blobs=blobs)
    with TestClient(app) as client:
        yield client, app.state.services


@pytest.fixture
def acme(any_db: Database) -> str:
    return accounts.Accounts(any_db).create_token(org="acme", email="ops@acme.test", role="viewer")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def org_of(db: Database, token: str) -> str:
    return accounts.Accounts(db).sign_in(token).org_id


def test_the_fast_answer_is_the_routes_answer_byte_for_byte(
    app_and_services: tuple[TestClient, Services], any_db: Database, acme: str
) -> None:
    client, services = app_and_services
    acme_org = org_of(any_db, acme)
    captured = finished_capture(services.snapshots, acme_org)
    queued = services.snapshots.create_page(acme_org, CaptureRequest(url="https://example.com"))
    route = Route()
    fast = TestClient(FastSnapshotRead(route, services))
    for snapshot_id in (captured, queued.id):
        services.principals.clear()  # the full app's route answers, and remembers the token
        full = client.get(f"/api/v1/snapshots/{snapshot_id}", headers=bearer(acme))
        answered = fast.get(f"/api/v1/snapshots/{snapshot_id}", headers=bearer(acme))
        assert full.status_code == answered.status_code == 200
        assert answered.content == full.content
        assert answered.headers == full.headers
    assert route.paths == []
    assert client.get(f"/api/v1/snapshots/{captured}", headers=bearer(acme)).json()["artifacts"]


def test_all_but_the_common_case_goes_on_to_the_route(
    app_and_services: tuple[TestClient, Services], any_db: Database, acme: str
) -> None:
    client, services = app_and_services
    rival = accounts.Accounts(any_db).create_token(
        org="rival", email="boss@rival.test", role="admin"
    )
    acme_org = org_of(any_db, acme)
    mine = services.snapshots.create_page(acme_org, CaptureRequest(url="https://example.com")).id
    theirs = services.snapshots.create_page(
        org_of(any_db, rival), CaptureRequest(url="https://example.com")
    ).id
    route = Route()
    fast = TestClient(FastSnapshotRead(route, services))
    path = f"/api/v1/snapshots/{mine}"

    assert fast.get(path, headers=bearer(acme)).status_code == PASSED_ON  # not remembered yet
    assert client.get(path, headers=bearer(acme)).status_code == 200  # now it is
    assert fast.get(path, headers=bearer(acme)).status_code == 200
    passed_on = [
        fast.get(path),  # no credentials
        fast.get(path, headers=bearer("snap_unknown")),
        fast.get(f"/api/v1/snapshots/{theirs}", headers=bearer(acme)),  # another organization's
        fast.get("/api/v1/snapshots/missing", headers=bearer(acme)),
        fast.get(f"{path}/image", headers=bearer(acme)),  # another route
        fast.get(f"{path}/", headers=bearer(acme)),
        fast.delete(path, headers=bearer(acme)),
        fast.head(path, headers=bearer(acme)),
    ]
    assert [answer.status_code for answer in passed_on] == [PASSED_ON] * len(passed_on)
    assert len(route.paths) == len(passed_on) + 1

    with services.db.session() as session:  # expired since it was read: the route says 404
        session.execute(
            update(Snapshot).where(Snapshot.id == mine).values(expires_at=utcnow() - timedelta(1))
        )
    assert fast.get(path, headers=bearer(acme)).status_code == PASSED_ON
    assert client.get(path, headers=bearer(acme)).status_code == 404


def test_each_read_counts_once_against_the_token_budget(
    settings: Settings, any_db: Database, blobs: FileBlobStore, acme: str
) -> None:
    """Fast answers and the route's answers (here 404s the fast path passed on) share one budget,
    and a request passed on is counted once, by the route."""
    tight = settings.model_copy(update={"token_requests_per_minute": 6})
    app = create_app(tight, db=any_db, blobs=blobs)
    services: Services = app.state.services
    mine = services.snapshots.create_page(
        org_of(any_db, acme), CaptureRequest(url="https://example.com")
    ).id
    with TestClient(app) as client:
        found = [client.get(f"/api/v1/snapshots/{mine}", headers=bearer(acme)) for _ in range(3)]
        missing = [client.get("/api/v1/snapshots/nope", headers=bearer(acme)) for _ in range(3)]
        refused = client.get(f"/api/v1/snapshots/{mine}", headers=bearer(acme))
    assert [answer.status_code for answer in found + missing] == [200] * 3 + [404] * 3
    assert missing[0].json()["title"] == "Not found"
    assert refused.status_code == 429
    assert refused.headers["ratelimit-policy"] == '"requests";q=6;w=60'
    assert refused.json()["status"] == 429
