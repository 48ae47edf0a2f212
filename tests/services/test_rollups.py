"""Stored roll-ups answer exactly what rolling the stored seconds up on read answers, whatever
order the samples came in, on SQLite and PostgreSQL; the migration and a rebuild make the same
rows ingest does; the sweeper keeps each resolution as long as its setting says."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import delete, select

from snapshotd.config import Settings
from snapshotd.services import retention
from snapshotd.services.accounts import Accounts, ensure_org
from snapshotd.services.metrics import Metrics
from snapshotd.services.rollups import RESOLUTIONS, Rollups, plan, serving_resolution
from snapshotd.services.samples import Sample, tag_set
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from snapshotd.store.models import Measurement, MetricRollup, MetricSeries
from tests.store.test_migrate import migrate

HOUR = 1_699_999_200  # a multiple of 3600
# Not even a multiple of 60: windows starting here have ragged ends at every level.
BASE = HOUR + 930
SPAN = 3 * 86400
HOSTS = ("a", "b", "c")
FUNCTIONS = ("average", "sum", "min", "max", "count")
Bucket = tuple[int, float, float, float]  # count, sum, min, max


@pytest.fixture
def metrics(any_db: Database) -> Metrics:
    return Metrics(any_db)


@pytest.fixture
def acme(any_db: Database) -> str:
    Accounts(any_db).create_token(org="acme", email="ops@acme.test", role="admin")
    with any_db.session() as session:
        return ensure_org(session, "acme").id


def generated(seed: int) -> list[Sample]:
    """Three series over three days: a sample every 30 s on average at random seconds, some
    seconds given twice, some samples pre-aggregated, values of mixed sign and size."""
    rng = random.Random(seed)
    out = []
    for host in HOSTS:
        tags = tag_set({"host": host})
        for _ in range(SPAN // 30):
            when = BASE + rng.randrange(SPAN)
            value = rng.choice((1.0, 1e6, 1e-3)) * rng.uniform(-50, 100)
            if rng.random() < 0.2:
                count = rng.randint(2, 9)
                low, high = value - rng.uniform(0, 5), value + rng.uniform(0, 5)
                out.append(Sample("disk.io", tags, when, count, value * count, low, high))
            else:
                out.append(Sample("disk.io", tags, when, 1, value, value, value))
    return out


def submit_shuffled(metrics: Metrics, org_id: str, samples: list[Sample], seed: int) -> None:
    """In random order and uneven batches: buckets get late and out-of-order seconds."""
    shuffled = samples[:]
    random.Random(seed).shuffle(shuffled)
    rng, index = random.Random(seed + 1), 0
    while index < len(shuffled):
        size = rng.randint(1, 4000)
        metrics.submit(org_id, shuffled[index : index + size], {})
        index += size


def seconds_of(db: Database) -> dict[int, list[tuple[int, int, float, float, float]]]:
    with db.session() as session:
        rows = session.execute(
            select(
                Measurement.series_id,
                Measurement.time,
                Measurement.count,
                Measurement.sum,
                Measurement.min,
                Measurement.max,
            ).order_by(Measurement.series_id, Measurement.time)
        )
        out: dict[int, list[tuple[int, int, float, float, float]]] = {}
        for sid, *row in rows:
            out.setdefault(sid, []).append(tuple(row))  # type: ignore[arg-type]
        return out


def rolled_on_read(
    seconds: list[tuple[int, int, float, float, float]], start: int, end: int, resolution: int
) -> dict[int, Bucket]:
    """The reference: the stored seconds of one series in [start, end], rolled up here."""
    out: dict[int, Bucket] = {}
    for when, count, total, low, high in seconds:
        if start <= when <= end:
            bucket = when - when % resolution
            c, s, lo, hi = out.get(bucket, (0, 0.0, low, high))
            out[bucket] = (c + count, s + total, min(lo, low), max(hi, high))
    return out


def windows() -> Iterator[tuple[int, int, int]]:
    """(start, end, resolution): ragged and aligned ends, resolutions every stored one divides
    and some none does, windows shorter than a bucket."""
    yield BASE, BASE + SPAN, 60
    yield BASE + 17, BASE + SPAN - 5, 3600
    yield HOUR, HOUR + SPAN - 1, 900  # both ends on hour boundaries
    yield BASE + 1000, BASE + 2 * 86400 + 77, 86400
    yield BASE + 5, BASE + 86400 + 3, 7200
    yield BASE + 31, BASE + 40000, 1800
    yield BASE + 59, BASE + 30000, 300
    yield BASE + 3, BASE + 20000, 120
    yield BASE + 299, BASE + 50000, 600
    yield BASE + 100, BASE + 20000, 45  # no stored resolution divides 45
    yield BASE + 7000, BASE + 7059, 3600  # inside one hour
    yield BASE + 50, BASE + 50, 60  # one second


def test_stored_rollups_read_the_same_as_rolling_up_the_seconds(
    any_db: Database, metrics: Metrics, acme: str
) -> None:
    submit_shuffled(metrics, acme, generated(1), seed=2)
    # Late arrivals into buckets that already exist, some of them into seconds already stored.
    late = generated(3)[::40]
    submit_shuffled(metrics, acme, late, seed=4)
    stored = seconds_of(any_db)
    with any_db.session() as session:
        host_series = {
            t["host"]: sid for sid, t in session.execute(select(MetricSeries.id, MetricSeries.tags))
        }
    assert len(stored) == len(host_series) == len(HOSTS)
    for start, end, resolution in windows():
        _metric, series = metrics.read(acme, "disk.io", start=start, end=end, resolution=resolution)
        drawn = {
            function: metrics.read_values(
                acme,
                "disk.io",
                start=start,
                end=end,
                resolution=resolution,
                function=function,
            )
            for function in FUNCTIONS
        }
        assert len(series) == len(HOSTS)
        for one in series:
            seconds = stored[host_series[one.tags["host"]]]
            expected = rolled_on_read(seconds, start, end, resolution)
            where = f"window {start}..{end} at {resolution} s, host {one.tags['host']}"
            assert [p[0] for p in one.points] == sorted(expected), where
            for when, count, total, low, high in one.points:
                c, s, lo, hi = expected[when]
                assert (count, low, high) == (c, lo, hi), where
                assert total == pytest.approx(s, rel=1e-12, abs=1e-6), where
            for function, found in drawn.items():
                lines = [(t, v) for tags, t, v in found if tags == one.tags]
                if not expected:
                    assert lines == [], (function, where)
                    continue
                [(times, values)] = lines
                assert times.tolist() == sorted(expected), (function, where)
                assert values == pytest.approx(
                    [value_of(expected[t], function) for t in sorted(expected)],
                    rel=1e-12,
                    abs=1e-6,
                ), (function, where)


def value_of(bucket: Bucket, function: str) -> float:
    count, total, low, high = bucket
    return {"sum": total, "min": low, "max": high, "count": float(count)}.get(
        function, total / count
    )


def test_reads_take_whole_buckets_from_the_rollups(
    any_db: Database, metrics: Metrics, acme: str
) -> None:
    """Without the seconds, an hour-aligned read still finds every sample: it read the roll-ups,
    not the seconds."""
    start = BASE - BASE % 3600 + 3600
    samples = [Sample("q", (), start + k * 7, 1, float(k), float(k), float(k)) for k in range(2000)]
    metrics.submit(acme, samples, {})
    with any_db.session() as session:
        session.execute(delete(Measurement))
    _metric, series = metrics.read(
        acme, "q", start=start, end=start + 4 * 3600 - 1, resolution=3600
    )
    assert [(p[0], p[1]) for p in series[0].points] == [
        (start, 515),
        (start + 3600, 514),
        (start + 7200, 514),
        (start + 10800, 457),
    ]
    assert sum(p[2] for p in series[0].points) == sum(range(2000))
    # A ragged window takes its ends from finer levels, down to the seconds (gone here): the
    # 60 s roll-ups from start + 60 on, the 15 min ones from start + 900 to the end's hour.
    _metric, series = metrics.read(acme, "q", start=start + 1, end=start + 3600, resolution=3600)
    assert [(p[0], p[1]) for p in series[0].points] == [
        (start, sum(1 for k in range(2000) if 60 <= 7 * k < 3600))
    ]


def test_plan_covers_each_second_once_from_the_coarsest_level() -> None:
    for start, end, resolution in windows():
        pieces = plan(start, end, resolution)
        assert pieces[0][1] == start and pieces[-1][2] == end + 1
        for (_l, _s, one_end), (_l2, next_start, _e) in zip(pieces, pieces[1:], strict=False):
            assert one_end == next_start
        for level, first, last in pieces:
            assert resolution % level == 0 and first % level == 0 and last % level == 0
            assert first < last
    assert plan(HOUR, HOUR + 86400 - 1, 3600) == [(3600, HOUR, HOUR + 86400)]
    hour = HOUR
    assert plan(hour - 61, hour + 7200 + 1, 3600) == [
        (1, hour - 61, hour - 60),
        (60, hour - 60, hour),
        (3600, hour, hour + 7200),
        (1, hour + 7200, hour + 7202),
    ]
    assert plan(hour + 5, hour + 100, 45) == [(1, hour + 5, hour + 101)]


def test_chart_resolutions_are_served_by_rollups() -> None:
    assert serving_resolution(3600, 3600) == 1
    assert serving_resolution(7200, 3600) == 2
    assert serving_resolution(40000, 3600) == 15
    assert serving_resolution(86400, 3600) == 60
    assert serving_resolution(7 * 86400, 3600) == 300
    assert serving_resolution(30 * 86400, 3600) == 900
    assert serving_resolution(400 * 86400, 3600) == 10800
    assert serving_resolution(10_000 * 86400, 3600) == 3 * 86400
    for span in (600, 3601, 86400, 7 * 86400, 30 * 86400, 365 * 86400):
        resolution = serving_resolution(span, 3600)
        assert span / resolution <= 3600
        assert resolution < 60 or resolution in RESOLUTIONS or resolution % 3600 == 0


def stored_rollups(db: Database) -> list[tuple[Any, ...]]:
    with db.session() as session:
        rows = session.execute(
            select(
                MetricRollup.series_id,
                MetricRollup.resolution,
                MetricRollup.time,
                MetricRollup.count,
                MetricRollup.sum,
                MetricRollup.min,
                MetricRollup.max,
            ).order_by(MetricRollup.series_id, MetricRollup.resolution, MetricRollup.time)
        )
        return [tuple(row) for row in rows]


def assert_same_rollups(found: list[tuple[Any, ...]], expected: list[tuple[Any, ...]]) -> None:
    assert len(found) == len(expected)
    assert [(r[:4], r[5:]) for r in found] == [(r[:4], r[5:]) for r in expected]
    assert np.allclose([r[4] for r in found], [r[4] for r in expected], rtol=1e-12, atol=1e-6)


def test_the_migration_and_a_rebuild_make_the_rows_ingest_makes(
    any_db: Database, metrics: Metrics, acme: str
) -> None:
    submit_shuffled(metrics, acme, generated(5)[:6000], seed=6)
    maintained = stored_rollups(any_db)
    assert {r[1] for r in maintained} == set(RESOLUTIONS)
    migrate(any_db, "0009", down=True)
    migrate(any_db, "head")  # the upgrade backfills from the seconds already stored
    assert_same_rollups(stored_rollups(any_db), maintained)
    with any_db.session() as session:
        session.execute(delete(MetricRollup).where(MetricRollup.resolution == 900))
    assert Rollups(any_db).rebuild() == len(maintained)
    assert_same_rollups(stored_rollups(any_db), maintained)


def test_deleting_a_metric_deletes_its_rollups(
    any_db: Database, metrics: Metrics, acme: str
) -> None:
    metrics.submit(acme, [Sample("gone", (), BASE, 1, 1.0, 1.0, 1.0)], {})
    metrics.submit(acme, [Sample("kept", (), BASE, 1, 1.0, 1.0, 1.0)], {})
    assert metrics.delete(acme, ["gone"]) == 1
    assert len(stored_rollups(any_db)) == len(RESOLUTIONS)


def test_the_sweeper_keeps_each_resolution_for_its_retention(
    any_db: Database, metrics: Metrics, acme: str, settings: Settings, blobs: FileBlobStore
) -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    ago = [int((now - timedelta(days=days)).timestamp()) for days in (100, 200, 500, 2000)]
    metrics.submit(acme, [Sample("disk", (), when, 1, 1.0, 1.0, 1.0) for when in ago], {})
    report = retention.sweep(settings, any_db, blobs, now=now)
    assert report.measurements == 4
    # The defaults: 1 min kept 180 days, 5 min 365, 15 min 730, 1 h 1825.
    assert report.rollups == 3 + 2 + 1 + 1
    left = {(r[1], r[2]) for r in stored_rollups(any_db)}
    assert left == {
        (resolution, when - when % resolution)
        for resolution, kept in ((60, 1), (300, 2), (900, 3), (3600, 3))
        for when in ago[:kept]
    }
    # A roll-up is never dropped before the finer data it stands in for.
    assert Settings(
        measurement_retention_days=30, rollup_1m_retention_days=10, rollup_1h_retention_days=0
    ).rollup_retention_days == {60: 30, 300: 365, 900: 730, 3600: 0}
    assert set(Settings(measurement_retention_days=0).rollup_retention_days.values()) == {0}


def test_a_rebuild_keeps_the_rollups_of_seconds_retention_has_pruned(
    any_db: Database, metrics: Metrics, acme: str, settings: Settings, blobs: FileBlobStore
) -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    old, recent = (int((now - timedelta(days=days)).timestamp()) for days in (100, 1))
    metrics.submit(acme, [Sample("disk", (), when, 1, 1.0, 1.0, 1.0) for when in (old, recent)], {})
    assert retention.sweep(settings, any_db, blobs, now=now).measurements == 1
    kept = stored_rollups(any_db)
    assert {r[2] for r in kept if r[2] <= old} == {old - old % r for r in RESOLUTIONS}
    assert Rollups(any_db).rebuild() == len(kept)
    assert_same_rollups(stored_rollups(any_db), kept)
