"""Stored roll-ups: a chart snapshot's cost over 1 h to 30 days of 10-second data, and what keeping
the roll-ups costs ingest, on SQLite and on PostgreSQL.

The data (one sample every 10 s per series for 30 days) goes into the measurements table in bulk
(executemany on SQLite, COPY on PostgreSQL), and `Rollups.rebuild` builds its roll-ups inside the
database, as the migration does for data stored before roll-ups existed. A chart snapshot's cost
is what its job does, in this process: read the series (`ChartSnapshots.spec`) and render them,
as bench/charts.py measures it. Ingest goes through `Metrics.submit` in batches of 1,000
measurements (20 timestamps of every series) into a fresh database, once as shipped and once with
the roll-up step replaced by nothing.
"""

from __future__ import annotations

import io
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
from sqlalchemy import text

from bench.postgres import PrivatePostgres
from bench.report import Row
from bench.stats import Series
from snapshotd.config import Settings
from snapshotd.engines.charts import ChartRenderer
from snapshotd.services import rollups
from snapshotd.services.accounts import Accounts, ensure_org
from snapshotd.services.chart_snapshots import ChartSnapshots
from snapshotd.services.graph import make_queue
from snapshotd.services.metrics import Metrics
from snapshotd.services.rollups import Rollups
from snapshotd.services.samples import Sample, tag_set
from snapshotd.services.snapshots import Snapshots
from snapshotd.services.spaces import Spaces
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database

DAYS = 30
STEP = 10
WINDOWS = (("1 h", 3600), ("1 day", 86400), ("7 days", 7 * 86400), ("30 days", DAYS * 86400))
ACTOR = "bench@rollups.test"
INGEST_SERIES, BATCH_TIMES = 50, 20  # an ingest batch: 20 timestamps of 50 series, 1,000 samples
# Commits wait for no disk flush, as SQLite's WAL with synchronous=NORMAL does; more WAL between
# checkpoints so the bulk load is not spent checkpointing.
POSTGRES = {"synchronous_commit": "off", "max_wal_size": "8GB"}


@dataclass
class Backend:
    database: str
    rows: int = 0
    load_seconds: float = 0.0
    rebuild_seconds: float = 0.0
    rollup_rows: int = 0
    charts: dict[str, Series] = field(default_factory=dict)  # read + render, by window
    reads: dict[str, Series] = field(default_factory=dict)  # read alone, by window
    resolutions: dict[str, int] = field(default_factory=dict)
    old_resolution: Series = field(default_factory=Series)  # 30 d at 720 s: 60 s roll-ups
    from_seconds: Series = field(default_factory=Series)  # 30 d at 725 s: no roll-up divides it
    ingest_with: float = 0.0
    ingest_without: float = 0.0
    ingested: int = 0


@dataclass
class RollupResult:
    series: int
    shots: int
    backends: list[Backend]


def run(quick: bool, say: Callable[[str], None]) -> RollupResult:
    series = 10 if quick else 50
    shots = 5 if quick else 15
    batches = 30 if quick else 100
    say(
        f"rollups: {series} series x {DAYS} days at one sample every {STEP} s = "
        f"{series * DAYS * 86400 // STEP:,} measurements per database"
        + (" (quick: 10 series; the full run uses 50)" if quick else "")
    )
    backends = []
    with (
        tempfile.TemporaryDirectory(prefix="snapshotd-bench-rollups-") as root,
        PrivatePostgres(POSTGRES) as postgres,
    ):
        for name in ("sqlite", "postgresql"):
            backend = Backend(name)

            def url(database: str, name: str = name) -> str:
                if name == "sqlite":
                    return f"sqlite:///{Path(root) / (database + '.db')}"
                return postgres.create_database(database)

            settings = Settings(data_dir=Path(root) / name)
            with _database(url("charts")) as db:
                _chart_costs(backend, settings, db, series, shots, say)
            ingest = INGEST_SERIES * BATCH_TIMES * batches
            say(f"rollups: {name}: ingest {ingest:,} measurements without, then with roll-ups")
            with _database(url("plain")) as db, mock.patch.object(rollups, "add"):
                backend.ingest_without = _ingest_rate(db, batches)
            with _database(url("rolled")) as db:
                backend.ingest_with = _ingest_rate(db, batches)
            backend.ingested = ingest
            backends.append(backend)
    return RollupResult(series, shots, backends)


@contextmanager
def _database(url: str) -> Iterator[Database]:
    db = Database.from_url(url)
    try:
        db.migrate()
        yield db
    finally:
        db.dispose()


def _org(db: Database) -> str:
    Accounts(db).create_token(org="bench", email=ACTOR, role="admin")
    with db.session() as session:
        return ensure_org(session, "bench").id


def _chart_costs(
    backend: Backend,
    settings: Settings,
    db: Database,
    series: int,
    shots: int,
    say: Callable[[str], None],
) -> None:
    org_id = _org(db)
    end = int(time.time()) // STEP * STEP
    start = end - DAYS * 86400
    say(f"rollups: {backend.database}: bulk load")
    began = time.perf_counter()
    backend.rows = _load(db, org_id, series, start, end)
    backend.load_seconds = time.perf_counter() - began
    say(f"rollups: {backend.database}: {backend.rows:,} rows in {backend.load_seconds:.0f} s")
    began = time.perf_counter()
    backend.rollup_rows = Rollups(db).rebuild()
    backend.rebuild_seconds = time.perf_counter() - began
    # What autovacuum does after a load on PostgreSQL: statistics, and the visibility map that
    # lets the roll-ups be read by index-only scans.
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE" if db.is_postgres else "ANALYZE"))
    say(
        f"rollups: {backend.database}: {backend.rollup_rows:,} roll-up rows rebuilt in "
        f"{backend.rebuild_seconds:.0f} s; {shots} chart snapshots per window"
    )
    metrics = Metrics(db)
    snapshots = Snapshots(settings, db, make_queue(settings, db), FileBlobStore(settings.blobs_dir))
    charts = ChartSnapshots(settings, snapshots, metrics)
    spaces = Spaces(db)
    space = spaces.create(org_id, "bench", actor=ACTOR)
    stream = {"metric": "cpu", "tags": [{"name": "host", "values": ["*"]}]}
    chart = spaces.create_chart(org_id, space.id, {"name": "cpu", "streams": [stream]}, actor=ACTOR)
    renderer = ChartRenderer()
    for label, seconds in WINDOWS:
        snapshot = charts.create(
            org_id, chart.id, duration=seconds, end_time=end, surface="native", actor=ACTOR
        )
        spec, metadata = charts.spec(snapshot)
        renderer.render(spec)  # warm: fonts, caches, the database's pages
        backend.resolutions[label] = metadata["resolution"]
        whole, read = Series(), Series()
        for _ in range(shots):
            began = time.perf_counter()
            spec, _metadata = charts.spec(snapshot)
            read.add(time.perf_counter() - began)
            renderer.render(spec)
            whole.add(time.perf_counter() - began)
        backend.charts[label], backend.reads[label] = whole, read
    for resolution, into in ((720, backend.old_resolution), (725, backend.from_seconds)):
        for _ in range(max(3, shots // 3)):
            began = time.perf_counter()
            metrics.read_values(org_id, "cpu", start=start, end=end, resolution=resolution)
            into.add(time.perf_counter() - began)


def _load(db: Database, org_id: str, series: int, start: int, end: int) -> int:
    """Every series' seconds from `start` to `end`; the first through `submit`, which creates the
    metric and its series, the rest straight into the table."""
    metrics = Metrics(db)
    tags = [tag_set({"host": f"host-{i:02d}"}) for i in range(series)]
    metrics.submit(org_id, [Sample("cpu", t, start, 1, 50.0, 50.0, 50.0) for t in tags], {})
    with db.engine.connect() as connection:
        ids = [sid for (sid,) in connection.execute(text("SELECT id FROM metric_series"))]
    times = np.arange(start + STEP, end + 1, STEP, dtype=np.int64)
    rng = np.random.default_rng(11)
    raw: Any = db.engine.raw_connection()
    try:
        for sid in sorted(ids):
            values = np.clip(50 + np.cumsum(rng.normal(0, 1, times.size)), 0, 100)
            if db.is_postgres:
                _copy(raw.driver_connection, sid, times, values)
            else:
                rows = zip(
                    [sid] * times.size,
                    times.tolist(),
                    [1] * times.size,
                    *([values.tolist()] * 3),
                    strict=True,
                )
                raw.cursor().executemany(
                    "INSERT INTO measurements (series_id, time, count, sum, min, max) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
            raw.commit()
    finally:
        raw.close()
    return series * (times.size + 1)


def _copy(connection: Any, sid: int, times: np.ndarray, values: np.ndarray) -> None:
    out = io.StringIO()
    for when, value in zip(times.tolist(), values.tolist(), strict=True):
        out.write(f"{sid}\t{when}\t1\t{value!r}\t{value!r}\t{value!r}\n")
    with connection.cursor() as cursor:
        columns = "series_id, time, count, sum, min, max"
        with cursor.copy(f"COPY measurements ({columns}) FROM STDIN") as copy:
            copy.write(out.getvalue())


def _ingest_rate(db: Database, batches: int) -> float:
    """Measurements per second through `Metrics.submit`, one batch after another."""
    org_id = _org(db)
    metrics = Metrics(db)
    series = INGEST_SERIES
    tags = [tag_set({"host": f"host-{i:02d}"}) for i in range(series)]
    first = int(time.time()) // STEP * STEP - batches * BATCH_TIMES * STEP
    metrics.submit(org_id, [Sample("cpu", t, first - STEP, 1, 1.0, 1.0, 1.0) for t in tags], {})
    rng = np.random.default_rng(5)
    prepared = []
    for batch in range(batches):
        samples = []
        for k in range(BATCH_TIMES):
            when = first + (batch * BATCH_TIMES + k) * STEP
            for t, value in zip(tags, rng.uniform(0, 100, series).tolist(), strict=True):
                samples.append(Sample("cpu", t, when, 1, value, value, value))
        prepared.append(samples)
    began = time.perf_counter()
    for samples in prepared:
        metrics.submit(org_id, samples, {})
    return sum(len(s) for s in prepared) / (time.perf_counter() - began)


def describe(result: RollupResult) -> str:
    lines = [
        f"rollups: {result.series} series x {DAYS} days, one sample every {STEP} s; a line chart "
        "of all series averaged into one line; a snapshot's cost is its job's own work in-process "
        f"(read the series + render 800x400), p50 of {result.shots}"
    ]
    for b in result.backends:
        lines.append(
            f"rollups: {b.database}: {b.rows:,} measurement rows loaded in {b.load_seconds:.0f} s; "
            f"{b.rollup_rows:,} roll-up rows rebuilt from them in {b.rebuild_seconds:.0f} s"
        )
    return "\n".join(lines)


def rows(result: RollupResult) -> list[Row]:
    out = []
    for b in result.backends:
        hour = b.charts["1 h"].p50
        cells = ", ".join(
            f"{label} {b.charts[label].p50:.0f} ms ({b.resolutions[label]} s)"
            for label, _seconds in WINDOWS
        )
        out.append(Row(f"{b.database}: chart snapshot read + render, p50 by window", cells))
        reads = ", ".join(f"{label} {b.reads[label].p50:.0f} ms" for label, _s in WINDOWS)
        out.append(Row(f"{b.database}:   of which reading the series", reads))
        month = b.charts["30 days"].p50
        out.append(
            Row(
                f"{b.database}: 30 days chart snapshot p50 vs 1 h",
                f"{month:.0f} ms",
                f"{hour:.0f} ms (1 h)",
                f"{month / hour:.2f}x" if hour else "-",
                "<= 300 ms, <= 3x 1 h",
                "yes" if month <= 300 and month <= 3 * hour else "NO",
            )
        )
        out.append(
            Row(
                f"{b.database}: read 30 days at 720 s (60 s roll-ups) / at 725 s (from the "
                "seconds, as every read was before)",
                f"{b.old_resolution.p50:.0f} ms",
                f"{b.from_seconds.p50:.0f} ms",
            )
        )
        out.append(
            Row(
                f"{b.database}: ingest Metrics.submit, {b.ingested:,} in batches of 1,000: "
                "measurements/s with roll-ups vs without",
                f"{b.ingest_with:,.0f}",
                f"{b.ingest_without:,.0f}",
                f"{b.ingest_with / b.ingest_without:.2f}x" if b.ingest_without else "-",
                ">= 20,000/s with",
                "yes" if b.ingest_with >= 20_000 else "NO",
            )
        )
    return out
