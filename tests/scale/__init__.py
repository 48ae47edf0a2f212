"""Scale and fault tests: many real processes (tests/cluster/) behaving as one service.

The helpers below speak the native API the way a client would and read the job rows the way an
operator would, so that each test says what it breaks and what must still hold.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

import httpx
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from snapshotd.store.models import Artifact, Job
from tests.cluster import Cluster, Service
from tests.cluster.processes import wait_for

T = TypeVar("T")
TERMINAL = ("success", "failed")


def wait_until(what: str, check: Callable[[], T | None], timeout: float = 90) -> T:
    """Polls `check` until it returns something truthy; deadlines are generous because the
    machine may be shared."""
    try:
        return cast(T, wait_for(what, check, timeout))
    except TimeoutError as late:
        raise AssertionError(str(late)) from None


def create_snapshot(client: httpx.Client, body: dict[str, Any], timeout: float = 60) -> str:
    """POSTs a capture and returns the snapshot id (see `post_snapshot`)."""
    snapshot_id: str = post_snapshot(client, body, timeout)["id"]
    return snapshot_id


def post_snapshot(
    client: httpx.Client, body: dict[str, Any], timeout: float = 60
) -> dict[str, Any]:
    """POSTs a capture and returns the new snapshot, waiting out 429/503 as a client should."""
    deadline = time.monotonic() + timeout
    while True:
        answer = client.post("/api/v1/snapshots", json=body)
        if answer.status_code not in (429, 503) or time.monotonic() > deadline:
            break
        time.sleep(min(5.0, float(answer.headers.get("retry-after", "1"))))
    assert answer.status_code == 202, answer.text
    created: dict[str, Any] = answer.json()
    return created


def snapshot(client: httpx.Client, snapshot_id: str) -> dict[str, Any]:
    answer = client.get(f"/api/v1/snapshots/{snapshot_id}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def wait_terminal(client: httpx.Client, snapshot_id: str, timeout: float = 150) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        body = snapshot(client, snapshot_id)
        return body if body["status"] in TERMINAL else None

    return wait_until(f"snapshot {snapshot_id} to finish", done, timeout)


def capture(url: str, **options: Any) -> dict[str, Any]:
    """A small capture request; the viewport is kept small so that the 2-core machine renders
    it quickly."""
    return {"url": url, "width": 640, "height": 400, "timeout_ms": 30_000, **options}


def job(engine: Engine, job_id: str) -> Job:
    with Session(engine) as session:
        row = session.get(Job, job_id)
        assert row is not None, f"no job {job_id}"
        return row


def capture_jobs(engine: Engine) -> list[Job]:
    with Session(engine) as session:
        return list(session.scalars(select(Job).where(Job.kind == "capture")))


def artifacts(engine: Engine, snapshot_id: str) -> list[Artifact]:
    with Session(engine) as session:
        rows = session.scalars(select(Artifact).where(Artifact.snapshot_id == snapshot_id))
        return list(rows)


def owner(cluster: Cluster, job_id: str, engine: Engine, timeout: float = 90) -> Service:
    """The worker process whose lease the job holds (worker ids are host:pid:n)."""

    def find() -> Service | None:
        row = job(engine, job_id)
        if row.state != "working" or not row.lease_owner:
            return None
        pid = int(row.lease_owner.split(":")[-2])
        return next((w for w in cluster.workers if w.alive and w.pid == pid), None)

    return wait_until(f"a worker to claim job {job_id}", find, timeout)


def download(client: httpx.Client, snapshot_id: str, role: str) -> tuple[bytes, str]:
    """An artifact's bytes (following the redirect to the bucket, if any) and the SHA-256 the
    API vouched for."""
    answer = client.get(f"/api/v1/snapshots/{snapshot_id}/{role}", follow_redirects=True)
    assert answer.status_code == 200, answer.text
    vouched = answer.headers.get("x-content-sha256") or answer.history[0].headers.get(
        "x-content-sha256", ""
    )
    return answer.content, vouched


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
