"""LISTEN/NOTIFY on a real PostgreSQL: a job committed through one connection pool wakes a
listener on another at once; a rolled-back one does not; the listener survives its connection
being killed."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from sqlalchemy import text

from snapshotd.config import Settings
from snapshotd.services.graph import make_queue
from snapshotd.store.db import Database
from snapshotd.store.notify import JobListener, conninfo


@pytest.fixture
def pg(any_db: Database) -> Database:
    if not any_db.is_postgres:
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    return any_db


def listening(db: Database) -> tuple[JobListener, threading.Event]:
    woken = threading.Event()
    listener = JobListener(conninfo(db.engine), woken.set).start()
    assert listener.listening.wait(10), "the listener did not connect"
    return listener, woken


def test_a_committed_job_wakes_a_listener_on_another_connection(
    pg: Database, settings: Settings
) -> None:
    other = Database.from_url(pg.engine.url.render_as_string(hide_password=False))
    queue = make_queue(settings, other)
    listener, woken = listening(pg)
    try:
        with pytest.raises(RuntimeError), other.session() as session:
            queue.enqueue(session, "capture", {"snapshot_id": "x"})
            raise RuntimeError("rolled back")
        assert not woken.wait(1.5), "a rolled-back job must not wake anyone"

        began = time.monotonic()
        with other.session() as session:
            queue.enqueue(session, "capture", {"snapshot_id": "y"})
        assert woken.wait(5) and time.monotonic() - began < 2
    finally:
        listener.stop()
        other.dispose()


def test_the_listener_reconnects_after_its_connection_is_killed(
    pg: Database, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="snapshotd.store.notify")
    listener, woken = listening(pg)
    try:
        with pg.engine.connect() as connection:
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
                )
            )
            connection.commit()
        deadline = time.monotonic() + 10
        while listener.listening.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert listener.listening.wait(10), "the listener did not reconnect"
        with pg.session() as session:
            make_queue(settings, pg).enqueue(session, "capture", {"snapshot_id": "z"})
        assert woken.wait(5)
    finally:
        listener.stop()
    # One line when the connection was lost and one when it came back, no traceback.
    lines = [r.getMessage() for r in caplog.records if r.name == "snapshotd.store.notify"]
    assert any("unreachable" in line and "polling" in line for line in lines), lines
    assert any("works again" in line for line in lines), lines
    assert all("\n" not in line for line in lines), lines


def test_an_idle_worker_on_postgresql_starts_another_process_job_at_once(
    pg: Database, settings: Settings
) -> None:
    from snapshotd.store.blobs import FileBlobStore
    from snapshotd.store.models import Job
    from snapshotd.worker import Worker, WorkerThreads

    slow = settings.model_copy(update={"poll_interval_seconds": 30.0})
    threads = WorkerThreads([Worker(slow, pg, FileBlobStore(slow.blobs_dir))])
    threads.start()
    other = Database.from_url(pg.engine.url.render_as_string(hide_password=False))
    try:
        time.sleep(1.0)  # the worker has polled once and is now waiting
        with other.session() as session:
            job = make_queue(slow, other).enqueue(session, "no-such-kind", {})
        deadline = time.monotonic() + 5
        state = "queued"
        while state == "queued" and time.monotonic() < deadline:
            time.sleep(0.05)
            with other.session() as session:
                found = session.get(Job, job.id)
                state = found.state if found else "gone"
        assert state == "failed", "the worker should have been woken, not waited for its poll"
    finally:
        threads.stop(timeout=30)
        other.dispose()
