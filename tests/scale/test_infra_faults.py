"""Infrastructure faults: PostgreSQL restarted under load, the S3 endpoint down, the disk full.

Each test breaks something real (a private PostgreSQL it stops, a private SeaweedFS it stops, a
small tmpfs it fills), then checks what must still hold: no accepted snapshot is lost, clients
are told to come back later (503 with Retry-After, in their surface's own error shape) instead of
getting a 500, the processes stay up and recover by themselves, and a job that fails says why in
plain words.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster import Cluster, Postgres, SeaweedS3, Service, fresh_database
from tests.pages import PageServer
from tests.scale import (
    artifacts,
    capture,
    capture_jobs,
    create_snapshot,
    download,
    job,
    sha256,
    wait_terminal,
    wait_until,
)

# Long enough for every worker loop (claims, lease renewals, the reaper, a finishing capture)
# to run into the outage at least once.
OUTAGE_SECONDS = 8
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def pages() -> Iterator[PageServer]:
    with PageServer("127.0.0.1") as server:
        yield server


def assert_unavailable(answer: httpx.Response) -> None:
    """503 with a usable Retry-After and no trace of a stack."""
    assert answer.status_code == 503, f"{answer.request.url}: {answer.status_code} {answer.text}"
    assert int(answer.headers["retry-after"]) > 0
    assert "Traceback" not in answer.text and 'File "' not in answer.text


def assert_no_route_fails(client: httpx.Client, routes: dict[str, dict[str, Any]]) -> None:
    """Every route of every surface, called with placeholder ids: none may answer 500, and
    whatever answers 503 says when to come back. Most answer 503 (they authenticate against the
    database); a few refuse their input first, and the signing key needs no database."""
    unavailable = 0
    for template, methods in routes.items():
        path = re.sub(r"\{[^}]+\}", "x1", template)
        for method in methods:
            answer = client.request(method.upper(), path, json={})
            if answer.status_code == 503:
                assert_unavailable(answer)
                unavailable += 1
            else:
                assert answer.status_code < 500, f"{method} {path}: {answer.text}"
    assert unavailable > len(routes) / 2


def running_jobs(cluster: Cluster) -> int:
    engine = cluster.database()
    try:
        return sum(row.state == "working" for row in capture_jobs(engine))
    finally:
        engine.dispose()


def outage_lines(service: Service, summary: str) -> int:
    return sum(summary in line for line in service.log_text().splitlines())


def test_a_postgres_restart_under_load_loses_no_snapshot(tmp_path: Path, pages: PageServer) -> None:
    with (
        Postgres() as postgres,
        Cluster(tmp_path, database_url=postgres.url, apis=1, workers=1) as cluster,
        cluster.client() as client,
    ):
        api, worker = cluster.apis[0], cluster.workers[0]
        # Slow pages, so that captures are still running when the database goes away.
        accepted = [
            create_snapshot(client, capture(f"{pages.url}/slow?s=1.5&n={n}")) for n in range(6)
        ]
        routes = client.get("/openapi.json").json()["paths"]
        wait_until("a capture to be running", lambda: running_jobs(cluster))
        postgres.stop()
        stopped = time.monotonic()
        try:
            assert_no_route_fails(client, routes)
            assert_unavailable(client.get("/readyz"))
            metrics = client.get("/metrics")  # still scraped, without the queue's gauges
            assert metrics.status_code == 200 and "snapshotd_database_up 0.0" in metrics.text
            assert "snapshotd_queue_depth" not in metrics.text
            native = client.get("/api/v1/snapshots")
            assert_unavailable(native)
            assert native.headers["content-type"] == PROBLEM
            assert native.json()["status"] == 503
            assert_unavailable(client.post("/api/v1/snapshots", json=capture(pages.url)))
            librato = httpx.get(
                f"{api.url}/v1/metrics", auth=("ops@scale.test", cluster.token), timeout=30
            )
            assert_unavailable(librato)
            assert librato.json()["errors"]["system"], librato.text
            thousandeyes = client.get("/v7/tests")
            assert_unavailable(thousandeyes)
            assert thousandeyes.headers["content-type"] == PROBLEM
            assert thousandeyes.json()["status"] == 503
            time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
            assert api.alive and worker.alive, "a process died while the database was down"
        finally:
            postgres.start()

        # The same API process recovers by itself: no restart, no 503 once it is ready.
        wait_until("the API to be ready again", lambda: client.get("/readyz").status_code == 200)
        answer = client.post("/api/v1/snapshots", json=capture(f"{pages.url}/echo?n=after"))
        assert answer.status_code == 202, answer.text
        accepted += [answer.json()["id"], create_snapshot(client, capture(f"{pages.url}/box"))]

        finished = {sid: wait_terminal(client, sid, timeout=180) for sid in accepted}
        failed = {
            sid: b["status_message"] for sid, b in finished.items() if b["status"] != "success"
        }
        assert not failed, f"snapshots lost to the restart: {failed}"
        for snapshot_id in accepted:
            image, vouched = download(client, snapshot_id, "image")
            assert sha256(image) == vouched

    assert api.incarnation == worker.incarnation == 1, "a process had to be restarted"
    # One line per outage, not a traceback per request or per poll.
    for service in (api, worker):
        assert "Traceback" not in service.log_text(), f"{service.name} logged a traceback"
    assert 1 <= outage_lines(api, "the database is unreachable") <= 3
    assert 1 <= outage_lines(worker, "the database is unreachable") <= 3


def test_an_api_and_a_worker_started_before_the_database_wait_for_it(
    tmp_path: Path, pages: PageServer
) -> None:
    with (
        Postgres() as postgres,
        Cluster(tmp_path, database_url=postgres.url, apis=0, workers=0) as cluster,
    ):
        postgres.stop()
        api, worker = cluster.launch("api"), cluster.launch("worker")
        wait_until(
            "both to say they wait for the database",
            lambda: all(outage_lines(s, "the database is unreachable") for s in (api, worker)),
        )
        assert api.alive and worker.alive
        postgres.start()
        api.wait_ready()
        worker.wait_ready()
        with cluster.client() as client:
            finished = wait_terminal(client, create_snapshot(client, capture(pages.url)), 120)
        assert finished["status"] == "success", finished["status_message"]
        for service in (api, worker):
            assert "database works again" in service.log_text()


def test_captures_fail_plainly_while_s3_is_down_and_succeed_once_it_is_back(
    tmp_path: Path, pages: PageServer
) -> None:
    with SeaweedS3() as seaweed, fresh_database() as database_url:
        s3 = seaweed.location()
        attempts = {"SNAPSHOTD_JOB_MAX_ATTEMPTS": "2"}
        with (
            Cluster(
                tmp_path, database_url=database_url, s3=s3, apis=1, workers=1, env=attempts
            ) as cluster,
            cluster.client() as client,
        ):
            worker = cluster.workers[0]
            before = create_snapshot(client, capture(f"{pages.url}/echo?n=before"))
            assert wait_terminal(client, before)["status"] == "success"

            seaweed.stop()
            try:
                during = create_snapshot(client, capture(f"{pages.url}/echo?n=during"))
                failed = wait_terminal(client, during, timeout=240)
                # Reads that need the bucket answer 503; reads of the database still work.
                assert_unavailable(client.get(f"/api/v1/snapshots/{before}/bundle"))
                assert client.get(f"/api/v1/snapshots/{before}").status_code == 200
                assert worker.alive, "the worker died while S3 was down"
            finally:
                seaweed.start()

            assert failed["status"] == "failed"
            message = failed["status_message"]
            assert message.startswith(
                "could not store the artifacts: the blob store is unreachable ("
            ), message
            engine = cluster.database()
            try:
                row = job(engine, failed["job_id"])
                assert (row.state, row.attempts) == ("failed", 2), "it was not tried again"
                assert artifacts(engine, during) == [], "a failed snapshot kept artifacts"
            finally:
                engine.dispose()

            after = create_snapshot(client, capture(f"{pages.url}/echo?n=after"))
            done = wait_terminal(client, after)
            assert done["status"] == "success", done["status_message"]
            for body in (done, wait_terminal(client, before)):
                for artifact in body["artifacts"]:
                    stored = s3.get(artifact["sha256"])
                    assert stored is not None and sha256(stored) == artifact["sha256"]
    assert worker.incarnation == 1
    assert 1 <= outage_lines(worker, "the blob store is unreachable") <= 3


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted on `path`: a real filesystem that really fills up."""
    if os.geteuid() != 0:
        pytest.skip("a full disk is made by mounting a small tmpfs, which needs root")
    path.mkdir(parents=True, exist_ok=True)
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)]
    mounted = subprocess.run(mount, capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=False)


def fill(folder: Path) -> Path:
    """Writes a file into `folder` until its filesystem has no space left; returns the file."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
    assert os.statvfs(folder).f_bavail == 0
    return filler


def blob_files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file() and path.name != "filler"]


def test_a_full_blobs_folder_fails_captures_plainly_and_leaves_no_partial_blob(
    tmp_path: Path, pages: PageServer
) -> None:
    # The SQLite database stays on the roomy disk and only the artifacts' folder fills up, as
    # when blobs get a volume of their own: artifacts outgrow metadata by far, and with the
    # database on the full disk the failure could not even be written down.
    data = tmp_path / "data"
    with small_disk(data / "blobs", "2m") as blobs:
        settings = {"SNAPSHOTD_JOB_MAX_ATTEMPTS": "2"}
        database_url = f"sqlite:///{data / 'snapshotd.db'}"
        with (
            Cluster(
                tmp_path, database_url=database_url, apis=1, workers=1, env=settings
            ) as cluster,
            cluster.client() as client,
        ):
            api, worker = cluster.apis[0], cluster.workers[0]
            before = create_snapshot(client, capture(f"{pages.url}/echo?n=before"))
            assert wait_terminal(client, before)["status"] == "success"

            filler = fill(blobs)
            during = create_snapshot(client, capture(f"{pages.url}/echo?n=during"))
            failed = wait_terminal(client, during)
            assert failed["status"] == "failed"
            assert failed["status_message"] == (
                "could not store the artifacts: no space left on device"
            )
            assert failed["job"]["attempts"] == 2, "it was not tried again"
            # Reads go on, stored bytes included; both processes are still up.
            assert client.get("/api/v1/snapshots").status_code == 200
            image, vouched = download(client, before, "image")
            assert sha256(image) == vouched
            assert api.alive and worker.alive
            # Nothing half-written: every file left is a whole blob named by its SHA-256.
            for path in blob_files(blobs):
                assert not path.name.startswith(".tmp-"), f"temp file left behind: {path}"
                assert sha256(path.read_bytes()) == path.name, f"partial blob: {path}"

            filler.unlink()
            after = create_snapshot(client, capture(f"{pages.url}/echo?n=after"))
            done = wait_terminal(client, after)
            assert done["status"] == "success", done["status_message"]
            stored = {path.name for path in blob_files(blobs)}
            assert {a["sha256"] for a in done["artifacts"]} <= stored
    assert worker.incarnation == 1
    assert 1 <= outage_lines(worker, "no space left on device") <= 3


def test_a_full_disk_under_sqlite_answers_writes_503_and_keeps_reads(tmp_path: Path) -> None:
    # Here the database itself is on the full disk: writes cannot be made, and the API says so
    # with 503 and Retry-After; reads of what is stored go on.
    with small_disk(tmp_path / "data", "16m") as data:
        database_url = f"sqlite:///{data / 'snapshotd.db'}"
        with (
            Cluster(tmp_path, database_url=database_url, apis=1, workers=0) as cluster,
            cluster.client() as client,
        ):
            api = cluster.apis[0]
            # No worker: the snapshot stays queued, which is all a read needs.
            queued = create_snapshot(client, capture("http://127.0.0.1:9/never-captured"))

            filler = fill(data)
            try:
                native = client.post("/api/v1/snapshots", json=capture("http://127.0.0.1:9/a"))
                assert_unavailable(native)
                assert native.headers["content-type"] == PROBLEM
                assert "disk is full" in native.json()["detail"]
                librato = httpx.post(
                    f"{api.url}/v1/metrics",
                    auth=("ops@scale.test", cluster.token),
                    json={"gauges": [{"name": "disk.test", "value": 1}]},
                    timeout=30,
                )
                assert_unavailable(librato)
                assert librato.json()["errors"]["system"], librato.text
                assert client.get(f"/api/v1/snapshots/{queued}").status_code == 200
                assert client.get("/api/v1/snapshots").status_code == 200
            finally:
                filler.unlink()

            answer = client.post("/api/v1/snapshots", json=capture("http://127.0.0.1:9/b"))
            assert answer.status_code == 202, answer.text
            assert api.alive and api.incarnation == 1
    assert "Traceback" not in api.log_text()
    assert 1 <= outage_lines(api, "no space left on device") <= 3
