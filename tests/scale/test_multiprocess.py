"""Two API processes and two worker processes on one PostgreSQL and one S3 bucket behave as one
service: a snapshot accepted by either API is captured exactly once and reads the same through
both."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster import Cluster, Postgres, S3Location, SeaweedS3
from tests.pages import PageServer
from tests.scale import (
    artifacts,
    capture,
    capture_jobs,
    create_snapshot,
    download,
    sha256,
    wait_terminal,
)

CAPTURES = 40
CLIENTS = 8


@pytest.fixture(scope="module")
def pages() -> Iterator[PageServer]:
    with PageServer("127.0.0.1") as server:
        yield server


@pytest.fixture
def s3() -> Iterator[S3Location]:
    with SeaweedS3() as server:
        yield server.location()


@pytest.fixture
def cluster(tmp_path: Path, s3: S3Location) -> Iterator[Cluster]:
    with (
        Postgres() as postgres,
        Cluster(tmp_path, database_url=postgres.url, s3=s3, apis=2, workers=2) as running,
    ):
        yield running


def _round_trip(cluster: Cluster, pages: PageServer, n: int) -> tuple[str, dict[str, Any]]:
    """Creates capture `n` through one API and follows it to the end through the other."""
    body = capture(f"{pages.url}/echo?n={n}", headers={"X-Capture": f"capture-{n}"})
    with cluster.client(n % 2) as creator, cluster.client(1 - n % 2) as reader:
        snapshot_id = create_snapshot(creator, body)
        return snapshot_id, wait_terminal(reader, snapshot_id)


def test_every_capture_succeeds_once_and_reads_the_same_everywhere(
    cluster: Cluster, pages: PageServer, s3: S3Location
) -> None:
    with ThreadPoolExecutor(CLIENTS) as clients:
        done = list(clients.map(lambda n: _round_trip(cluster, pages, n), range(CAPTURES)))

    failed = {sid: body["status_message"] for sid, body in done if body["status"] != "success"}
    assert not failed, f"captures did not succeed: {failed}"

    engine = cluster.database()
    try:
        jobs = Counter(job.payload["snapshot_id"] for job in capture_jobs(engine))
        assert jobs == Counter(sid for sid, _ in done), "not exactly one job per snapshot"
        assert {job.state for job in capture_jobs(engine)} == {"complete"}
        roles = {sid: sorted(a.role for a in artifacts(engine, sid)) for sid, _ in done}
    finally:
        engine.dispose()
    assert all(r == ["har", "html", "image", "manifest", "wacz"] for r in roles.values()), roles

    images = set()
    with cluster.client(0) as first, cluster.client(1) as second:
        for n, (snapshot_id, body) in enumerate(done):
            recorded = {a["role"]: a["sha256"] for a in body["artifacts"]}
            assert s3.get(recorded["image"]) is not None, f"{snapshot_id}: image not in bucket"
            assert sha256(s3.get(recorded["image"]) or b"") == recorded["image"]
            one, vouched_one = download(first, snapshot_id, "image")
            two, vouched_two = download(second, snapshot_id, "image")
            assert one == two
            assert sha256(one) == recorded["image"] == vouched_one == vouched_two
            # The DOM kept as evidence proves each snapshot holds its own page, not another's.
            html, _ = download(second if n % 2 else first, snapshot_id, "html")
            assert f"capture-{n}" in html.decode()
            images.add(recorded["image"])
    assert len(images) == CAPTURES, "two snapshots share one image: a result went astray"

    # Each worker reports its own captures at its metrics address; together, every capture once.
    successes = [
        _sample(httpx.get(worker.metrics_url, timeout=10).text, SUCCESSES)
        for worker in cluster.workers
    ]
    assert sum(successes) == CAPTURES, successes


SUCCESSES = 'snapshotd_capture_seconds_count{outcome="success"}'


def _sample(exposition: str, name: str) -> float:
    """One sample's value in a Prometheus text exposition; 0 when it is absent."""
    for line in exposition.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
