"""callback_url: a Standard Webhooks–signed event when a job ends, delivered through the guard."""

from __future__ import annotations

import json
import time

from fastapi.testclient import TestClient
from sqlalchemy import select

from snapshotd.services.webhooks import sign
from snapshotd.store.db import Database
from snapshotd.store.models import Job, Organization
from tests.pages import PageServer


def hook_hits(pages: PageServer, marker: str) -> list[tuple[dict[str, str], bytes]]:
    return [
        (headers, body)
        for method, path, headers, body in pages.hits
        if path == "/hook" and marker.encode() in body
    ]


def test_callback_is_signed_and_describes_the_outcome(
    live_api: TestClient, auth: dict[str, str], pages: PageServer, db: Database
) -> None:
    created = live_api.post(
        "/api/v1/snapshots",
        headers=auth,
        json={"url": pages.url + "/", "evidence": False, "callback_url": pages.url + "/hook"},
    ).json()
    deadline = time.monotonic() + 30
    while not hook_hits(pages, created["id"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    ((headers, body),) = hook_hits(pages, created["id"])
    event = json.loads(body)
    assert event["type"] == "snapshot.completed"
    assert event["data"]["id"] == created["id"] and event["data"]["status"] == "success"
    with db.session() as session:
        secret = session.scalars(select(Organization.webhook_secret)).one()
    expected = sign(secret, headers["webhook-id"], int(headers["webhook-timestamp"]), body)
    assert headers["webhook-signature"] == expected


def test_callback_to_a_denied_address_is_refused_up_front(
    live_api: TestClient, auth: dict[str, str]
) -> None:
    response = live_api.post(
        "/api/v1/snapshots",
        headers=auth,
        json={"url": "https://example.org", "callback_url": "http://169.254.169.254/hook"},
    )
    assert response.status_code == 400


def test_undeliverable_callback_is_retried_with_backoff(
    live_api: TestClient, auth: dict[str, str], pages: PageServer, db: Database
) -> None:
    created = live_api.post(
        "/api/v1/snapshots",
        headers=auth,
        json={
            "url": pages.url + "/",
            "evidence": False,
            "callback_url": pages.url + "/missing-hook",
        },
    ).json()
    deadline = time.monotonic() + 30
    job = None
    while time.monotonic() < deadline:
        with db.session() as session:
            job = session.scalars(select(Job).where(Job.kind == "webhook")).first()
            if job is not None and job.attempts >= 1 and job.state == "queued":
                break
        time.sleep(0.1)
    assert job is not None and job.state == "queued", job
    assert "404" in job.error
    assert (
        live_api.get(f"/api/v1/snapshots/{created['id']}", headers=auth).json()["status"]
        == "success"
    )
