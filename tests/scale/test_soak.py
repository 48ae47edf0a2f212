"""A long run through the cluster while workers are SIGKILLed at random and restarted, then an
audit of what the kills left behind.

Runs only with SNAPSHOTD_SOAK=1 (it takes minutes); SNAPSHOTD_SOAK_CAPTURES sets how many
captures (default 1000) and SNAPSHOTD_SOAK_SEED makes the kill schedule repeatable.
"""

from __future__ import annotations

import itertools
import os
import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from snapshotd.store.models import Artifact, Job
from tests.cluster import Cluster, Service, fresh_database
from tests.pages import PageServer
from tests.scale import capture, create_snapshot, wait_terminal

pytestmark = [
    pytest.mark.skipif(
        os.environ.get("SNAPSHOTD_SOAK") != "1", reason="a soak run: set SNAPSHOTD_SOAK=1"
    ),
    pytest.mark.timeout(6 * 3600),
]

CAPTURES = int(os.environ.get("SNAPSHOTD_SOAK_CAPTURES", "1000"))
SEED = int(os.environ.get("SNAPSHOTD_SOAK_SEED", str(random.randrange(1 << 32))))
CLIENTS = 6
PATHS = ["/", "/box", "/echo?n={n}", "/slow?s=1"]
GAVE_UP = "gave up: the worker running this capture stopped responding too many times"
# Written by a blob `put` or the key file writer and renamed into place when complete.
TEMP_MARKERS = (".tmp-", ".tmp")


class Chaos:
    """SIGKILLs a random worker every few seconds and starts it again, until stopped. Kills
    alternate between the worker process alone (the OOM killer, `kill -9 PID`) and its whole
    process group (a supervisor), whose Playwright driver then cannot clean up after Chromium."""

    def __init__(self, cluster: Cluster, rng: random.Random) -> None:
        self.cluster, self.rng = cluster, rng
        self.killed: list[tuple[Service, int]] = []  # the killed incarnations
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="chaos", daemon=True)
        self.error: BaseException | None = None

    def kill(self) -> None:
        victim: Service = self.rng.choice(self.cluster.workers)
        self.killed.append((victim, victim.incarnation))
        if len(self.killed) % 2:
            victim.kill()
        else:
            victim.kill_group()
        victim.start().wait_ready()

    def _run(self) -> None:
        try:
            while not self.done.wait(self.rng.uniform(2.0, 8.0)):
                self.kill()
        except BaseException as error:
            self.error = error

    def __enter__(self) -> Chaos:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(180)


def _one(cluster: Cluster, pages: PageServer, n: int) -> tuple[str, dict[str, Any]]:
    path = PATHS[n % len(PATHS)].format(n=n)
    with cluster.client(n % 2) as creator, cluster.client(1 - n % 2) as reader:
        snapshot_id = create_snapshot(creator, capture(f"{pages.url}{path}"))
        return snapshot_id, wait_terminal(reader, snapshot_id, timeout=600)


@dataclass
class Soak:
    done: list[tuple[str, dict[str, Any]]]
    kills: int
    orphans: dict[str, list[int]]
    temp_dirs: dict[str, list[str]]
    jobs: list[Job]
    artifacts: Counter[tuple[str, str]]
    unfinished_writes: list[str]
    unreferenced_blobs: list[str]


@pytest.fixture(scope="module")
def soak(tmp_path_factory: pytest.TempPathFactory) -> Soak:
    """Runs the soak once; the tests below each audit one part of what it left."""
    print(f"soak: {CAPTURES} captures, seed {SEED}")
    root = tmp_path_factory.mktemp("soak")
    data = root / "data"
    with PageServer("127.0.0.1") as pages, fresh_database() as url:
        cluster = Cluster(root, database_url=url, apis=2, workers=2)
        with cluster, Chaos(cluster, random.Random(SEED)) as chaos:
            counter = itertools.count()
            with ThreadPoolExecutor(CLIENTS) as clients:
                done = list(
                    clients.map(lambda _: _one(cluster, pages, next(counter)), range(CAPTURES))
                )
            chaos.done.set()
            chaos.thread.join(180)
            assert chaos.error is None, f"the chaos thread failed: {chaos.error!r}"
            while len(chaos.killed) < 2:  # a short run still sees both kinds of kill
                chaos.kill()
        # The cluster has stopped, and found no process of a live worker outliving it.
        orphans = {f"{w.name}#{n}": w.survivors(n) for w, n in chaos.killed}
        temp_dirs = {w.name: sorted(p.name for p in w.tmp.iterdir()) for w in cluster.workers}
        print(
            f"soak: {len(chaos.killed)} worker kills; before the sweep: "
            f"{len(_unfinished(data))} unfinished writes, "
            f"{len(_unreferenced(cluster, data / 'blobs'))} unreferenced blobs, "
            f"browser temp dirs {temp_dirs}"
        )
        swept = cluster.cli("sweep", env={"SNAPSHOTD_BLOB_GRACE_SECONDS": "0"})
        print(f"soak: sweep: {swept.strip()}")
        engine = cluster.database()
        try:
            with Session(engine) as session:
                jobs = list(session.scalars(select(Job).where(Job.kind == "capture")))
                rows = session.scalars(select(Artifact))
                artifacts = Counter((a.snapshot_id, a.role) for a in rows)
        finally:
            engine.dispose()
        unreferenced = _unreferenced(cluster, data / "blobs")
    print(f"soak: {dict(Counter(body['status'] for _, body in done))}")
    return Soak(
        done,
        len(chaos.killed),
        orphans,
        temp_dirs,
        jobs,
        artifacts,
        _unfinished(data),
        unreferenced,
    )


def _unfinished(folder: Path) -> list[str]:
    """Files under `folder` that look like writes that never completed."""
    return sorted(
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_file() and any(marker in path.name for marker in TEMP_MARKERS)
    )


def _unreferenced(cluster: Cluster, blobs: Path) -> list[str]:
    stored = {path.name for path in blobs.rglob("*") if path.is_file() and len(path.name) == 64}
    engine = cluster.database()
    try:
        with Session(engine) as session:
            referenced = set(session.scalars(select(Artifact.sha256)))
    finally:
        engine.dispose()
    return sorted(stored - referenced)


def test_every_capture_ends_once_and_only_repeated_kills_fail_one(soak: Soak) -> None:
    reasons = Counter(
        body["status_message"] for _, body in soak.done if body["status"] != "success"
    )
    assert set(reasons) <= {GAVE_UP}, f"failures other than repeated kills: {reasons}"
    assert Counter(job.payload["snapshot_id"] for job in soak.jobs) == Counter(
        snapshot_id for snapshot_id, _ in soak.done
    )
    assert {job.state for job in soak.jobs} <= {"complete", "failed"}
    assert all(count == 1 for count in soak.artifacts.values()), "an artifact stored twice"


def test_no_process_of_a_killed_worker_survives(soak: Soak) -> None:
    assert soak.kills >= 2
    assert not any(soak.orphans.values()), f"processes of killed workers survive: {soak.orphans}"


def test_the_sweep_leaves_no_unfinished_write_or_unreferenced_blob(soak: Soak) -> None:
    assert not soak.unfinished_writes
    assert not soak.unreferenced_blobs


def test_killed_workers_leave_no_browser_temp_dirs(soak: Soak) -> None:
    assert not any(soak.temp_dirs.values()), f"browser temp dirs left behind: {soak.temp_dirs}"
