"""Metrics, spaces, charts and chart snapshots against SQLite and PostgreSQL: one contract."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from snapshotd.config import Settings
from snapshotd.engines.charts import ChartSpec
from snapshotd.errors import BadRequest, NotFound, Unprocessable
from snapshotd.http.dialects.librato.common import metric_changes
from snapshotd.services import retention
from snapshotd.services.accounts import Accounts, ensure_org
from snapshotd.services.chart_snapshots import ChartSnapshots, chart_resolution
from snapshotd.services.graph import make_queue
from snapshotd.services.metrics import Metrics, SeriesPoints
from snapshotd.services.samples import MetricChanges, MetricProps, Point, Sample, sample, tag_set
from snapshotd.services.snapshots import Snapshots
from snapshotd.services.spaces import Spaces
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from snapshotd.store.models import Measurement, Metric, MetricSeries, Snapshot

# A multiple of 300 (and so of 60): buckets at every tested resolution start here.
BASE = 1_700_000_100
ACTOR = "ops@acme.test"


@pytest.fixture
def metrics(any_db: Database) -> Metrics:
    return Metrics(any_db)


@pytest.fixture
def spaces(any_db: Database) -> Spaces:
    return Spaces(any_db)


@pytest.fixture
def chart_snapshots(
    any_db: Database, settings: Settings, blobs: FileBlobStore, metrics: Metrics
) -> ChartSnapshots:
    snapshots = Snapshots(settings, any_db, make_queue(settings, any_db), blobs)
    return ChartSnapshots(settings, snapshots, metrics)


def org(db: Database, slug: str) -> str:
    """Creates the organization the way the operator does (a token), then reads its id back."""
    Accounts(db).create_token(org=slug, email=f"ops@{slug}.test", role="admin")
    with db.session() as session:
        return ensure_org(session, slug).id


def point(
    name: str, value: float, when: int, tags: Mapping[str, Any] | None = None, **fields: float
) -> Sample:
    """A plain value, or a pre-aggregated sample when `count` and `sum` (+ min, max) are given."""
    given: dict[str, Any] = dict(fields) if fields else {"value": value}
    return sample(name, given, tag_set(dict(tags or {})), when, "measurements.0")


def rows(db: Database, model: type[Any]) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def only_points(found: list[SeriesPoints]) -> list[Point]:
    assert len(found) == 1
    return found[0].points


def hosts(found: Iterable[SeriesPoints]) -> set[str]:
    return {series.tags.get("host", "") for series in found}


# -- metrics: submit and read ---------------------------------------------------------------------


def submit_rollup_data(metrics: Metrics, acme: str) -> None:
    metrics.submit(
        acme,
        [
            point("api.latency", 1, BASE),
            point("api.latency", 3, BASE),
            point("api.latency", 0, BASE + 30, count=4, sum=20, min=2, max=9),
            point("api.latency", 10, BASE + 59),
            point("api.latency", 5, BASE + 60),
            # count and sum alone: min and max are the mean
            point("api.latency", 0, BASE + 120, count=2, sum=6),
            point("api.latency", -2, BASE + 299),
            point("api.latency", 7, BASE + 300),
        ],
        {},
    )


def test_submit_and_read_raw_and_rolled_up(metrics: Metrics, any_db: Database) -> None:
    acme = org(any_db, "acme")
    submit_rollup_data(metrics, acme)

    def read(resolution: int, start: int = BASE, end: int = BASE + 600) -> list[Point]:
        metric, found = metrics.read(
            acme, "api.latency", start=start, end=end, resolution=resolution
        )
        assert metric.key == "api.latency"
        return only_points(found)

    assert read(1) == [
        (BASE, 2, 4.0, 1.0, 3.0),
        (BASE + 30, 4, 20.0, 2.0, 9.0),
        (BASE + 59, 1, 10.0, 10.0, 10.0),
        (BASE + 60, 1, 5.0, 5.0, 5.0),
        (BASE + 120, 2, 6.0, 3.0, 3.0),
        (BASE + 299, 1, -2.0, -2.0, -2.0),
        (BASE + 300, 1, 7.0, 7.0, 7.0),
    ]
    assert read(60) == [
        (BASE, 7, 34.0, 1.0, 10.0),
        (BASE + 60, 1, 5.0, 5.0, 5.0),
        (BASE + 120, 2, 6.0, 3.0, 3.0),
        (BASE + 240, 1, -2.0, -2.0, -2.0),
        (BASE + 300, 1, 7.0, 7.0, 7.0),
    ]
    assert read(300) == [
        (BASE, 11, 43.0, -2.0, 10.0),
        (BASE + 300, 1, 7.0, 7.0, 7.0),
    ]
    # Bucket start is time - time % resolution even when the window starts mid-bucket.
    assert read(60, start=BASE + 30, end=BASE + 60) == [
        (BASE, 5, 30.0, 2.0, 10.0),
        (BASE + 60, 1, 5.0, 5.0, 5.0),
    ]


def test_samples_in_the_same_second_merge_across_submissions(
    metrics: Metrics, any_db: Database
) -> None:
    acme = org(any_db, "acme")
    submit_rollup_data(metrics, acme)
    metrics.submit(acme, [point("api.latency", 12, BASE), point("api.latency", 0.5, BASE)], {})
    metrics.submit(acme, [point("api.latency", 0, BASE, count=3, sum=6, min=-1, max=4)], {})
    _metric, found = metrics.read(acme, "api.latency", start=BASE, end=BASE, resolution=1)
    assert only_points(found) == [(BASE, 7, 22.5, -1.0, 12.0)]
    _metric, found = metrics.read(acme, "api.latency", start=BASE, end=BASE + 299, resolution=300)
    assert only_points(found) == [(BASE, 16, 61.5, -2.0, 12.0)]


def test_read_window_bounds_are_inclusive(metrics: Metrics, any_db: Database) -> None:
    acme = org(any_db, "acme")
    submit_rollup_data(metrics, acme)
    _metric, found = metrics.read(
        acme, "api.latency", start=BASE + 30, end=BASE + 299, resolution=1
    )
    assert [p[0] - BASE for p in only_points(found)] == [30, 59, 60, 120, 299]
    _metric, found = metrics.read(acme, "api.latency", start=BASE + 1, end=BASE + 29, resolution=1)
    assert only_points(found) == []
    _metric, found = metrics.read(acme, "api.latency", start=BASE, end=BASE, resolution=1)
    assert only_points(found) == [(BASE, 2, 4.0, 1.0, 3.0)]


def test_read_refuses_bad_windows_and_unknown_metrics(metrics: Metrics, any_db: Database) -> None:
    acme = org(any_db, "acme")
    submit_rollup_data(metrics, acme)
    with pytest.raises(BadRequest):
        metrics.read(acme, "api.latency", start=BASE + 10, end=BASE, resolution=1)
    with pytest.raises(BadRequest):
        metrics.read(acme, "api.latency", start=BASE, end=BASE + 10, resolution=0)
    with pytest.raises(BadRequest):
        metrics.read(acme, "api.latency", start=BASE, end=BASE + 10**6, resolution=1)
    with pytest.raises(BadRequest):
        metrics.read(acme, "not a name", start=BASE, end=BASE + 10, resolution=1)
    with pytest.raises(NotFound):
        metrics.read(acme, "no.such.metric", start=BASE, end=BASE + 10, resolution=1)
    with pytest.raises(NotFound):
        metrics.read(org(any_db, "rival"), "api.latency", start=BASE, end=BASE + 10, resolution=1)


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        (None, {"web-1", "web-2", "db-1", "web-3"}),
        ({}, {"web-1", "web-2", "db-1", "web-3"}),
        ({"host": ["web-*"]}, {"web-1", "web-2", "web-3"}),
        ({"host": ["*-1"]}, {"web-1", "db-1"}),
        ({"host": ["web-1", "db-*"]}, {"web-1", "db-1"}),
        ({"host": ["web-*", "!web-2"]}, {"web-1", "web-3"}),
        ({"host": ["!web-*"]}, {"db-1"}),
        ({"region": ["*"]}, {"web-1", "web-2", "db-1"}),
        ({"region": ["!eu"]}, {"web-2", "web-3"}),
        ({"Host": ["WEB-*"], "REGION": ["Eu"]}, {"web-1"}),
        ({"zone": ["a"]}, set()),
        ({"zone": ["*"]}, set()),
        ({"zone": ["!a"]}, {"web-1", "web-2", "db-1", "web-3"}),
    ],
)
def test_read_tag_filters(
    metrics: Metrics, any_db: Database, wanted: dict[str, list[str]] | None, expected: set[str]
) -> None:
    acme = org(any_db, "acme")
    metrics.submit(
        acme,
        [
            point("net.rx", 1, BASE, {"host": "web-1", "region": "eu"}),
            point("net.rx", 2, BASE, {"host": "web-2", "region": "us"}),
            point("net.rx", 3, BASE, {"host": "db-1", "region": "eu"}),
            point("net.rx", 4, BASE, {"host": "web-3"}),
        ],
        {},
    )
    _metric, found = metrics.read(
        acme, "net.rx", start=BASE, end=BASE + 60, resolution=60, tags=wanted
    )
    assert hosts(found) == expected
    assert len(found) == len(expected)
    values = {s.tags["host"]: s.points for s in found}
    if "web-2" in values:
        assert values["web-2"] == [(BASE, 1, 2.0, 2.0, 2.0)]


def test_names_are_case_insensitive_and_tag_values_lower_cased(
    metrics: Metrics, any_db: Database
) -> None:
    acme = org(any_db, "acme")
    created = metrics.submit(
        acme,
        [point("CPU.Load", 1, BASE, {"Host": "Web-1"})],
        {"cpu.load": MetricProps(type="counter", period=60, display_name="Load")},
    )
    assert created == 1
    metrics.submit(acme, [point("cpu.load", 2, BASE + 1, {"host": "WEB-1"})], {})
    metrics.submit(acme, [point("cpu.LOAD", 3, BASE + 2, {"HOST": "web-1"})], {})
    items, found, total = metrics.find(acme)
    assert (len(items), found, total) == (1, 1, 1)
    assert rows(any_db, MetricSeries) == 1
    metric = metrics.get(acme, "Cpu.Load")
    assert (metric.name, metric.key) == ("CPU.Load", "cpu.load")
    # props apply when a submission creates the metric
    assert (metric.type, metric.period, metric.display_name) == ("counter", 60, "Load")
    _metric, series = metrics.read(acme, "CPU.LOAD", start=BASE, end=BASE + 10, resolution=1)
    assert len(series) == 1 and series[0].tags == {"host": "web-1"}
    assert [p[2] for p in series[0].points] == [1.0, 2.0, 3.0]


def test_submit_nothing_is_a_no_op(metrics: Metrics, any_db: Database) -> None:
    acme = org(any_db, "acme")
    assert metrics.submit(acme, [], {}) == 0
    assert metrics.find(acme) == ([], 0, 0)


# -- metrics: concurrent first submissions --------------------------------------------------------


def race(
    monkeypatch: pytest.MonkeyPatch, lookup: str, submits: list[Callable[[], object]]
) -> list[dict[Any, int]]:
    """Runs each of `submits` in its own thread; every thread finishes its first `lookup` (of
    metrics or series) before any goes on to insert. Returns what each first lookup found."""
    original = getattr(Metrics, lookup)
    barrier = threading.Barrier(len(submits))
    local = threading.local()
    first: list[dict[Any, int]] = []

    def gated(*args: Any) -> dict[Any, int]:
        found: dict[Any, int] = original(*args)
        if not getattr(local, "waited", False):
            local.waited = True
            first.append(dict(found))
            barrier.wait(timeout=20)
        return found

    monkeypatch.setattr(Metrics, lookup, staticmethod(gated))
    errors: list[BaseException] = []

    def run(submit: Callable[[], object]) -> None:
        try:
            submit()
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(submit,)) for submit in submits]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    monkeypatch.setattr(Metrics, lookup, staticmethod(original))
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    return first


@pytest.mark.timeout(120)
def test_concurrent_submits_of_a_new_metric_create_it_once(
    metrics: Metrics, any_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    acme = org(any_db, "acme")

    def submit(value: float) -> Callable[[], int]:
        return lambda: metrics.submit(acme, [point("race.new", value, BASE, {"host": "a"})], {})

    first = race(monkeypatch, "_existing_metrics", [submit(1.0), submit(2.0)])
    assert first == [{}, {}]  # both threads saw no metric and both inserted one
    assert rows(any_db, Metric) == 1
    assert rows(any_db, MetricSeries) == 1
    _metric, found = metrics.read(acme, "race.new", start=BASE, end=BASE, resolution=1)
    assert only_points(found) == [(BASE, 2, 3.0, 1.0, 2.0)]


@pytest.mark.timeout(120)
def test_concurrent_submits_of_a_new_series_create_it_once(
    metrics: Metrics, any_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    acme = org(any_db, "acme")
    metrics.submit(acme, [point("race.series", 0, BASE - 1, {"host": "old"})], {})

    def submit(value: float) -> Callable[[], int]:
        return lambda: metrics.submit(acme, [point("race.series", value, BASE, {"host": "b"})], {})

    first = race(monkeypatch, "_existing_series", [submit(1.0), submit(2.0)])
    assert first == [{}, {}]  # both threads saw no series and both inserted one
    assert rows(any_db, Metric) == 1
    assert rows(any_db, MetricSeries) == 2
    _metric, found = metrics.read(
        acme, "race.series", start=BASE, end=BASE, resolution=1, tags={"host": ["b"]}
    )
    assert only_points(found) == [(BASE, 2, 3.0, 1.0, 2.0)]


@pytest.mark.timeout(120)
def test_concurrent_submits_in_opposite_orders_do_not_deadlock(
    metrics: Metrics,
    any_db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two submissions of the same series and second, listed in opposite orders."""
    acme = org(any_db, "acme")
    for second in range(BASE, BASE + 10):  # several rounds: a deadlock needs the two to overlap
        batch = [point("fan.out", 1, second, {"host": f"h{i:03}"}) for i in range(200)]
        metrics.submit(acme, batch, {})  # the series and the second's rows exist

        def submit(samples: list[Sample]) -> Callable[[], int]:
            return lambda: metrics.submit(acme, samples, {})

        race(monkeypatch, "_existing_series", [submit(batch), submit(batch[::-1])])
        _metric, found = metrics.read(acme, "fan.out", start=second, end=second, resolution=1)
        assert len(found) == 200
        assert all(s.points == [(second, 3, 3.0, 1.0, 1.0)] for s in found)


@pytest.mark.timeout(120)
def test_concurrent_submits_at_a_barrier_never_fail(metrics: Metrics, any_db: Database) -> None:
    """No instrumentation: two threads released together, several rounds of new metrics."""
    acme = org(any_db, "acme")
    errors: list[BaseException] = []

    def submit(barrier: threading.Barrier, name: str, value: float) -> None:
        try:
            barrier.wait(timeout=20)
            metrics.submit(acme, [point(name, value, BASE, {"host": "h"})], {})
        except BaseException as error:
            errors.append(error)

    rounds = 8
    for index in range(rounds):
        barrier = threading.Barrier(2)
        threads = [
            threading.Thread(target=submit, args=(barrier, f"race.{index}", value))
            for value in (1.0, 2.0)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert errors == []
    assert rows(any_db, Metric) == rounds
    assert rows(any_db, MetricSeries) == rounds
    for index in range(rounds):
        _metric, found = metrics.read(acme, f"race.{index}", start=BASE, end=BASE, resolution=1)
        assert only_points(found) == [(BASE, 2, 3.0, 1.0, 2.0)]


# -- metrics: records -----------------------------------------------------------------------------


def test_put_creates_with_a_type_and_updates(metrics: Metrics, any_db: Database) -> None:
    acme = org(any_db, "acme")
    assert metrics.put(
        acme, "Disk.Used", MetricChanges(type="gauge", display_name="Disk", period=60)
    )
    assert metrics.put(acme, "net.packets", MetricChanges(type="counter"))
    disk = metrics.get(acme, "disk.used")
    assert (disk.name, disk.type, disk.display_name, disk.period) == (
        "Disk.Used",
        "gauge",
        "Disk",
        60,
    )
    assert metrics.get(acme, "net.packets").type == "counter"

    changes = MetricChanges(description="bytes used", attributes={"color": "#fff"}, period=None)
    assert metrics.put(acme, "DISK.USED", changes) is False
    assert metrics.put(acme, "disk.used", MetricChanges(attributes={"units": "B"})) is False
    disk = metrics.get(acme, "disk.used")
    assert (disk.type, disk.display_name, disk.description, disk.period) == (
        "gauge",
        "Disk",
        "bytes used",
        None,
    )
    assert disk.attributes == {"color": "#fff", "units": "B"}
    assert metrics.find(acme)[2] == 2

    with pytest.raises(BadRequest) as refused:
        metrics.put(acme, "unknown.metric", MetricChanges(display_name="x"))
    assert refused.value.field == "type"
    with pytest.raises(BadRequest):
        metrics.put(acme, "unknown.metric", MetricChanges(type="composite"))
    with pytest.raises(BadRequest):
        metrics.put(acme, "disk.used", metric_changes({"period": 1.5}))
    with pytest.raises(BadRequest):
        metrics.put(acme, "bad name", MetricChanges(type="gauge"))
    with pytest.raises(NotFound):
        metrics.get(acme, "unknown.metric")
    # another organization has its own namespace
    rival = org(any_db, "rival")
    assert metrics.put(rival, "disk.used", MetricChanges(type="counter")) is True
    assert metrics.get(acme, "disk.used").type == "gauge"


def test_put_creates_a_metric_with_attributes(metrics: Metrics, any_db: Database) -> None:
    acme = org(any_db, "acme")
    assert metrics.put(
        acme, "queue.depth", MetricChanges(type="gauge", attributes={"color": "#fff"})
    )
    assert metrics.get(acme, "queue.depth").attributes == {"color": "#fff"}


def test_the_sweeper_deletes_measurements_past_their_retention(
    metrics: Metrics, any_db: Database, settings: Settings, blobs: FileBlobStore
) -> None:
    acme = org(any_db, "acme")
    now = datetime.now(UTC)
    old, recent = int(now.timestamp()) - 91 * 86400, int(now.timestamp()) - 89 * 86400
    metrics.submit(acme, [point("disk", 1, old), point("disk", 2, recent)], {})
    report = retention.sweep(settings, any_db, blobs, now=now)
    assert report.measurements == 1
    # Per second (the stored roll-ups are kept longer: see test_rollups.py)
    _metric, series = metrics.read(acme, "disk", start=old, end=old + 10, resolution=1)
    assert series[0].points == []
    _metric, series = metrics.read(acme, "disk", start=recent, end=recent + 10, resolution=1)
    assert [p[2] for p in series[0].points] == [2.0]
    forever = settings.model_copy(update={"measurement_retention_days": 0})
    assert retention.sweep(forever, any_db, blobs, now=now + timedelta(days=365)).measurements == 0


def test_delete_by_name_and_pattern_removes_measurements(
    metrics: Metrics, any_db: Database
) -> None:
    acme, rival = org(any_db, "acme"), org(any_db, "rival")
    metrics.submit(
        acme,
        [
            point("cpu.user", 1, BASE, {"host": "a"}),
            point("cpu.user", 2, BASE, {"host": "b"}),
            point("cpu.system", 3, BASE),
            point("mem.free", 4, BASE),
            point("mem.free", 5, BASE + 1),
        ],
        {},
    )
    metrics.submit(rival, [point("cpu.user", 9, BASE)], {})
    assert (rows(any_db, Metric), rows(any_db, MetricSeries), rows(any_db, Measurement)) == (
        4,
        5,
        6,
    )

    assert metrics.delete(acme, ["MEM.FREE"]) == 1
    with pytest.raises(NotFound):
        metrics.get(acme, "mem.free")
    assert rows(any_db, Measurement) == 4

    assert metrics.delete(acme, ["cpu.*"]) == 2
    assert metrics.find(acme) == ([], 0, 0)
    assert metrics.delete(acme, ["cpu.*"]) == 0
    # only the rival's metric, series and measurement are left
    assert (rows(any_db, Metric), rows(any_db, MetricSeries), rows(any_db, Measurement)) == (
        1,
        1,
        1,
    )
    _metric, found = metrics.read(rival, "cpu.user", start=BASE, end=BASE, resolution=1)
    assert only_points(found) == [(BASE, 1, 9.0, 9.0, 9.0)]
    with pytest.raises(BadRequest):
        metrics.delete(acme, [])


def test_find_paginates_with_a_name_filter(metrics: Metrics, any_db: Database) -> None:
    acme, rival = org(any_db, "acme"), org(any_db, "rival")
    for name in ("app.d", "App.B", "app.a", "db.x", "app.c"):
        metrics.put(acme, name, MetricChanges(type="gauge"))
    metrics.put(rival, "app.z", MetricChanges(type="gauge"))

    def names(items: list[Metric]) -> list[str]:
        return [m.key for m in items]

    items, found, total = metrics.find(acme)
    assert (names(items), found, total) == (["app.a", "app.b", "app.c", "app.d", "db.x"], 5, 5)
    items, found, total = metrics.find(acme, name="APP", offset=1, length=2)
    assert (names(items), found, total) == (["app.b", "app.c"], 4, 5)
    items, found, total = metrics.find(acme, name="app", offset=1, length=2, desc=True)
    assert (names(items), found, total) == (["app.c", "app.b"], 4, 5)
    items, found, total = metrics.find(acme, name="app", offset=10)
    assert (names(items), found, total) == ([], 4, 5)
    items, found, total = metrics.find(acme, name="p.a")
    assert (names(items), found, total) == (["app.a"], 1, 5)
    # LIKE wildcards in the filter are literal
    assert metrics.find(acme, name="%")[1] == 0
    assert metrics.find(acme, name="app_")[1] == 0


# -- spaces and charts ----------------------------------------------------------------------------


def test_spaces_create_find_get_rename_delete(spaces: Spaces, any_db: Database) -> None:
    acme, rival = org(any_db, "acme"), org(any_db, "rival")
    ops = spaces.create(acme, "Ops", actor=ACTOR)
    web = spaces.create(acme, "Web", actor=ACTOR)
    spaces.create(acme, "Database", actor=ACTOR)
    spaces.create(rival, "Ops", actor="ops@rival.test")  # names are per organization
    with pytest.raises(Unprocessable):
        spaces.create(acme, "Ops", actor=ACTOR)
    with pytest.raises(BadRequest):
        spaces.create(acme, "", actor=ACTOR)

    items, found, total = spaces.find(acme)
    assert ([s.name for s in items], found, total) == (["Database", "Ops", "Web"], 3, 3)
    items, found, total = spaces.find(acme, name="o", desc=True)
    assert ([s.name for s in items], found, total) == (["Ops"], 1, 3)
    items, found, total = spaces.find(acme, name="E", offset=1, length=1)
    assert ([s.name for s in items], found, total) == (["Web"], 2, 3)

    space, charts = spaces.get(acme, ops.id)
    assert (space.name, charts) == ("Ops", [])
    assert spaces.rename(acme, ops.id, "Operations", actor=ACTOR).name == "Operations"
    assert spaces.get(acme, ops.id)[0].name == "Operations"
    with pytest.raises(Unprocessable):
        spaces.rename(acme, ops.id, "Web", actor=ACTOR)
    assert spaces.get(acme, ops.id)[0].name == "Operations"

    for attempt in (
        lambda: spaces.get(rival, ops.id),
        lambda: spaces.rename(rival, ops.id, "Mine", actor=ACTOR),
        lambda: spaces.delete(rival, ops.id, actor=ACTOR),
        lambda: spaces.charts(rival, ops.id),
        lambda: spaces.get(acme, 999_999),
    ):
        with pytest.raises(NotFound):
            attempt()

    chart = spaces.create_chart(acme, web.id, {"name": "Hits", "streams": []}, actor=ACTOR)
    spaces.delete(acme, web.id, actor=ACTOR)
    with pytest.raises(NotFound):
        spaces.get(acme, web.id)
    with pytest.raises(NotFound):
        spaces.chart(acme, web.id, chart.id)
    assert spaces.find(acme)[1:] == (2, 2)
    assert spaces.find(rival)[1:] == (1, 1)


def test_chart_create_and_update_keep_stream_ids(spaces: Spaces, any_db: Database) -> None:
    acme = org(any_db, "acme")
    space = spaces.create(acme, "Ops", actor=ACTOR)
    chart = spaces.create_chart(
        acme,
        space.id,
        {
            "name": "CPU",
            "streams": [
                {"metric": "cpu.user"},
                {"metric": "cpu.system", "tags": [{"name": "Host", "values": ["Web-*"]}]},
            ],
        },
        actor=ACTOR,
    )
    assert (chart.name, chart.type) == ("CPU", "line")
    first, second = chart.definition["streams"]
    assert first == {
        "id": 1,
        "metric": "cpu.user",
        "type": "gauge",
        "group_function": "average",
        "summary_function": "average",
        "source": "*",
    }
    assert second["id"] == 2 and second["tags"] == [{"name": "host", "values": ["web-*"]}]
    assert spaces.get(acme, space.id)[1] == [chart.id]

    updated = spaces.update_chart(
        acme,
        space.id,
        chart.id,
        {
            "type": "stacked",
            "streams": [
                {"id": 2, "metric": "cpu.system"},
                {"metric": "cpu.idle"},
                {"id": 99, "metric": "cpu.steal"},  # an id the chart never had: a new stream
                {"id": 2, "metric": "cpu.nice"},  # an id already used in this update: new
            ],
        },
        actor=ACTOR,
    )
    assert (updated.name, updated.type) == ("CPU", "stacked")
    assert [(s["id"], s["metric"]) for s in updated.definition["streams"]] == [
        (2, "cpu.system"),
        (3, "cpu.idle"),
        (4, "cpu.steal"),
        (5, "cpu.nice"),
    ]

    # An update without streams keeps them; options are merged into the definition.
    renamed = spaces.update_chart(
        acme, space.id, chart.id, {"name": "Processor", "min": "0", "label": "%"}, actor=ACTOR
    )
    stored = spaces.chart(acme, space.id, chart.id)
    assert renamed.name == stored.name == "Processor"
    assert [s["id"] for s in stored.definition["streams"]] == [2, 3, 4, 5]
    assert (stored.definition["min"], stored.definition["label"]) == (0.0, "%")

    # A stream dropped earlier does not come back under its old id.
    again = spaces.update_chart(
        acme, space.id, chart.id, {"streams": [{"id": 1, "metric": "cpu.user"}]}, actor=ACTOR
    )
    assert [s["id"] for s in again.definition["streams"]] == [6]
    assert [c.id for c in spaces.charts(acme, space.id)] == [chart.id]

    for raw in (
        {"streams": [{"metric": "cpu.user"}]},  # no name
        {"name": "X", "type": "pie"},
        {"name": "X", "streams": [{"composite": 's("a", "*"'}]},  # not closed
        {"name": "X", "streams": [{"metric": "bad name"}]},
        {"name": "X", "streams": [{"metric": "a", "color": "red"}]},
        {"name": "X", "streams": [{"metric": "a", "group_function": "median"}]},
        {"name": "X", "streams": "cpu.user"},
    ):
        with pytest.raises(BadRequest):
            spaces.create_chart(acme, space.id, raw, actor=ACTOR)

    spaces.delete_chart(acme, space.id, chart.id, actor=ACTOR)
    with pytest.raises(NotFound):
        spaces.chart(acme, space.id, chart.id)


def test_charts_of_another_organization_are_not_found(spaces: Spaces, any_db: Database) -> None:
    acme, rival = org(any_db, "acme"), org(any_db, "rival")
    space = spaces.create(acme, "Ops", actor=ACTOR)
    other_space = spaces.create(acme, "Web", actor=ACTOR)
    rival_space = spaces.create(rival, "Theirs", actor="ops@rival.test")
    chart = spaces.create_chart(acme, space.id, {"name": "CPU"}, actor=ACTOR)
    body = {"name": "Mine"}
    for attempt in (
        lambda: spaces.chart(rival, space.id, chart.id),
        lambda: spaces.chart(rival, rival_space.id, chart.id),
        lambda: spaces.chart(acme, other_space.id, chart.id),  # right org, wrong space
        lambda: spaces.create_chart(rival, space.id, body, actor=ACTOR),
        lambda: spaces.create_chart(acme, rival_space.id, body, actor=ACTOR),
        lambda: spaces.update_chart(rival, space.id, chart.id, body, actor=ACTOR),
        lambda: spaces.update_chart(rival, rival_space.id, chart.id, body, actor=ACTOR),
        lambda: spaces.delete_chart(rival, space.id, chart.id, actor=ACTOR),
        lambda: spaces.delete_chart(rival, rival_space.id, chart.id, actor=ACTOR),
        lambda: spaces.chart(acme, space.id, 999_999),
    ):
        with pytest.raises(NotFound):
            attempt()
    assert spaces.chart(acme, space.id, chart.id).name == "CPU"
    assert spaces.get(rival, rival_space.id)[1] == []


# -- chart snapshots ------------------------------------------------------------------------------


def test_chart_snapshot_create_validates(
    chart_snapshots: ChartSnapshots, spaces: Spaces, settings: Settings, any_db: Database
) -> None:
    acme, rival = org(any_db, "acme"), org(any_db, "rival")
    space = spaces.create(acme, "Ops", actor=ACTOR)
    chart = spaces.create_chart(
        acme, space.id, {"name": "CPU", "streams": [{"metric": "cpu.user"}]}, actor=ACTOR
    )

    def create(org_id: str = acme, chart_id: Any = chart.id, **kwargs: Any) -> Snapshot:
        return chart_snapshots.create(org_id, chart_id, surface="native", actor=ACTOR, **kwargs)

    with pytest.raises(NotFound):
        create(chart_id=999_999)
    with pytest.raises(NotFound):
        create(rival)
    for bad_id in ("abc", None, True, 1.5):
        with pytest.raises(BadRequest):
            create(chart_id=bad_id)
    longest = settings.chart_max_duration_seconds
    for duration in (0, -60, 1.5, longest + 1, "soon"):
        with pytest.raises(BadRequest) as refused:
            create(duration=duration)
        assert refused.value.field == "duration"
    now = time.time()
    for end_time in (now + 120, now + 3600, -1, "later"):
        with pytest.raises(BadRequest) as refused:
            create(end_time=end_time)
        assert refused.value.field == "end_time"
    with pytest.raises(BadRequest):
        create(chart_type="pie")

    snapshot = create(chart_id=str(chart.id), duration=longest, end_time=BASE + 600)
    assert (snapshot.kind, snapshot.status, snapshot.org_id) == ("chart", "queued", acme)
    assert snapshot.options == {
        "chart_id": chart.id,
        "space_id": space.id,
        "chart": {"name": "CPU", "type": "line", "streams": chart.definition["streams"]},
        "duration": longest,
        "end_time": BASE + 600,
        "width": settings.chart_width,
        "height": settings.chart_height,
    }
    assert create(duration=1, chart_type="bignumber").options["chart"]["type"] == "bignumber"
    recent = create()  # defaults: the last hour up to now
    assert recent.options["duration"] == 3600
    assert abs(recent.options["end_time"] - time.time()) < 10


def submit_latency(metrics: Metrics, acme: str) -> None:
    metrics.submit(
        acme,
        [
            point("req.latency", 10, BASE + 10, {"host": "web-1"}),
            point("req.latency", 20, BASE + 20, {"host": "web-1"}),
            point("req.latency", 30, BASE + 10, {"host": "web-2"}),
            point("req.latency", 40, BASE + 20, {"host": "web-2"}),
            point("req.latency", 50, BASE + 60, {"host": "web-2"}),  # the window's last second
            point("req.latency", 99, BASE + 61, {"host": "web-2"}),  # after the window
            point("req.latency", 99, BASE - 1, {"host": "web-1"}),  # before the window
        ],
        {},
    )


def chart_spec(
    chart_snapshots: ChartSnapshots,
    spaces: Spaces,
    acme: str,
    raw: dict[str, Any],
    *,
    end_time: int = BASE + 60,
    duration: int = 60,
) -> tuple[ChartSpec, dict[str, Any]]:
    existing, _found, _total = spaces.find(acme, name="specs")
    space = existing[0] if existing else spaces.create(acme, "Specs", actor=ACTOR)
    chart = spaces.create_chart(acme, space.id, raw, actor=ACTOR)
    snapshot = chart_snapshots.create(
        acme, chart.id, duration=duration, end_time=end_time, surface="native", actor=ACTOR
    )
    return chart_snapshots.spec(snapshot)


def lines(spec: ChartSpec) -> dict[str, list[tuple[float, float]]]:
    return {
        s.label: list(zip(s.times.tolist(), s.values.tolist(), strict=True)) for s in spec.series
    }


def test_spec_line_average_and_other_group_functions(
    chart_snapshots: ChartSnapshots, spaces: Spaces, metrics: Metrics, any_db: Database
) -> None:
    acme = org(any_db, "acme")
    submit_latency(metrics, acme)
    spec, metadata = chart_spec(
        chart_snapshots,
        spaces,
        acme,
        {"name": "Latency", "streams": [{"metric": "req.latency", "units_short": "ms"}]},
    )
    assert (spec.type, spec.title, spec.start, spec.end) == ("line", "Latency", BASE, BASE + 60)
    assert (spec.width, spec.height, spec.units, spec.value) == (800, 400, "ms", None)
    # one line, the series averaged point by point (a lone point is its own average)
    assert lines(spec) == {"req.latency": [(BASE + 10, 20.0), (BASE + 20, 30.0), (BASE + 60, 50.0)]}
    assert all(s.times.dtype == np.float64 and s.color is None for s in spec.series)
    assert metadata == {
        "chart_id": metadata["chart_id"],
        "chart_name": "Latency",
        "chart_type": "line",
        "start_time": BASE,
        "end_time": BASE + 60,
        "resolution": 1,
        "streams": [{"metric": "req.latency", "lines": 1, "points": 3}],
        "value": None,
        "markers": 0,
    }

    expected = {
        "sum": [(BASE + 10, 40.0), (BASE + 20, 60.0), (BASE + 60, 50.0)],
        "min": [(BASE + 10, 10.0), (BASE + 20, 20.0), (BASE + 60, 50.0)],
        "max": [(BASE + 10, 30.0), (BASE + 20, 40.0), (BASE + 60, 50.0)],
    }
    for group, points in expected.items():
        stream = {"metric": "req.latency", "group_function": group, "color": "#123456"}
        spec, _metadata = chart_spec(
            chart_snapshots, spaces, acme, {"name": group, "streams": [stream]}
        )
        assert lines(spec) == {"req.latency": points}, group
        assert spec.series[0].color == "#123456"

    # a legacy source on the stream is a filter on the tag `source`
    metrics.submit(
        acme,
        [
            point("legacy", 1, BASE + 5, {"source": "web-1"}),
            point("legacy", 3, BASE + 5, {"source": "web-2"}),
            point("legacy", 100, BASE + 5, {"source": "db-1"}),
        ],
        {},
    )
    stream = {"metric": "legacy", "source": "Web-*"}
    spec, _metadata = chart_spec(
        chart_snapshots, spaces, acme, {"name": "src", "streams": [stream]}
    )
    assert lines(spec) == {"legacy": [(BASE + 5, 2.0)]}

    # a tag filter on the stream picks the series that are combined
    tagged = {"metric": "req.latency", "tags": [{"name": "host", "values": ["web-1"]}]}
    spec, _metadata = chart_spec(
        chart_snapshots, spaces, acme, {"name": "one", "streams": [tagged]}
    )
    assert lines(spec) == {"req.latency": [(BASE + 10, 10.0), (BASE + 20, 20.0)]}


def test_spec_breakout_draws_a_line_per_series(
    chart_snapshots: ChartSnapshots, spaces: Spaces, metrics: Metrics, any_db: Database
) -> None:
    acme = org(any_db, "acme")
    submit_latency(metrics, acme)
    stream = {"metric": "req.latency", "group_function": "breakout", "name": "Latency"}
    spec, metadata = chart_spec(chart_snapshots, spaces, acme, {"name": "L", "streams": [stream]})
    assert lines(spec) == {
        "Latency host=web-1": [(BASE + 10, 10.0), (BASE + 20, 20.0)],
        "Latency host=web-2": [(BASE + 10, 30.0), (BASE + 20, 40.0), (BASE + 60, 50.0)],
    }
    assert metadata["streams"] == [{"metric": "req.latency", "lines": 2, "points": 5}]


def test_spec_stacked_chart(
    chart_snapshots: ChartSnapshots, spaces: Spaces, metrics: Metrics, any_db: Database
) -> None:
    acme = org(any_db, "acme")
    submit_latency(metrics, acme)
    streams = [
        {
            "metric": "req.latency",
            "name": "one",
            "color": "#112233",
            "tags": [{"name": "host", "values": ["web-1"]}],
        },
        {"metric": "req.latency", "name": "two", "tags": [{"name": "host", "values": ["web-2"]}]},
        {"metric": "no.such.metric"},
    ]
    spec, metadata = chart_spec(
        chart_snapshots, spaces, acme, {"name": "Stack", "type": "stacked", "streams": streams}
    )
    assert spec.type == "stacked"
    assert [(s.label, s.color) for s in spec.series] == [("one", "#112233"), ("two", None)]
    assert lines(spec) == {
        "one": [(BASE + 10, 10.0), (BASE + 20, 20.0)],
        "two": [(BASE + 10, 30.0), (BASE + 20, 40.0), (BASE + 60, 50.0)],
    }
    assert metadata["streams"] == [
        {"metric": "req.latency", "lines": 1, "points": 2},
        {"metric": "req.latency", "lines": 1, "points": 3},
        {"metric": "no.such.metric", "lines": 0, "points": 0},
    ]


def test_spec_bignumber_summary_and_last_value(
    chart_snapshots: ChartSnapshots, spaces: Spaces, metrics: Metrics, any_db: Database
) -> None:
    acme = org(any_db, "acme")
    submit_latency(metrics, acme)
    web1 = [{"name": "host", "values": ["web-1"]}]

    def value(stream: dict[str, Any], **options: Any) -> float | None:
        raw = {"name": "Big", "type": "bignumber", "streams": [stream], **options}
        spec, metadata = chart_spec(chart_snapshots, spaces, acme, raw)
        assert spec.type == "bignumber" and metadata["value"] == spec.value
        return spec.value

    assert value({"metric": "req.latency", "tags": web1}) == 15.0  # average by default
    assert value({"metric": "req.latency", "tags": web1, "summary_function": "sum"}) == 30.0
    assert value({"metric": "req.latency", "tags": web1, "summary_function": "max"}) == 20.0
    assert value({"metric": "req.latency", "tags": web1, "summary_function": "count"}) == 2.0
    assert value({"metric": "req.latency", "tags": web1, "summary_function": "derivative"}) == 10.0
    assert value({"metric": "req.latency", "tags": web1}, use_last_value=True) == 20.0
    # across both hosts the line is the average per time: 20, 30, 50
    assert value({"metric": "req.latency", "summary_function": "sum"}) == 100.0
    assert value({"metric": "req.latency"}, use_last_value=True) == 50.0

    spec, _metadata = chart_spec(
        chart_snapshots,
        spaces,
        acme,
        {
            "name": "Units",
            "type": "bignumber",
            "streams": [{"metric": "req.latency", "units_long": "milliseconds"}],
        },
    )
    assert spec.units == "milliseconds"


def test_spec_without_data(
    chart_snapshots: ChartSnapshots, spaces: Spaces, metrics: Metrics, any_db: Database
) -> None:
    acme = org(any_db, "acme")
    submit_latency(metrics, acme)
    # a metric that does not exist
    spec, metadata = chart_spec(
        chart_snapshots, spaces, acme, {"name": "None", "streams": [{"metric": "nothing.here"}]}
    )
    assert (spec.series, spec.value) == ([], None)
    assert metadata["streams"] == [{"metric": "nothing.here", "lines": 0, "points": 0}]
    # a metric with no point in the window (for every group function)
    for group in ("average", "breakout"):
        stream = {"metric": "req.latency", "group_function": group}
        spec, metadata = chart_spec(
            chart_snapshots, spaces, acme, {"name": group, "streams": [stream]}, end_time=BASE - 10
        )
        assert spec.series == [] and metadata["streams"][0]["lines"] == 0
    # a tag filter nothing matches
    tagged = {"metric": "req.latency", "tags": [{"name": "host", "values": ["db-*"]}]}
    spec, _metadata = chart_spec(chart_snapshots, spaces, acme, {"name": "db", "streams": [tagged]})
    assert spec.series == []
    # a bignumber with nothing to summarize, and a chart with no streams at all
    for raw in (
        {"name": "Big", "type": "bignumber", "streams": [{"metric": "req.latency"}]},
        {"name": "Empty", "type": "bignumber", "streams": []},
        {"name": "Empty line"},
    ):
        spec, metadata = chart_spec(chart_snapshots, spaces, acme, raw, end_time=BASE - 10)
        assert (spec.series, spec.value, metadata["value"]) == ([], None, None)


def test_spec_uses_the_chart_frozen_at_request_and_a_coarser_resolution(
    chart_snapshots: ChartSnapshots, spaces: Spaces, metrics: Metrics, any_db: Database
) -> None:
    acme = org(any_db, "acme")
    submit_latency(metrics, acme)
    space = spaces.create(acme, "Ops", actor=ACTOR)
    chart = spaces.create_chart(
        acme, space.id, {"name": "Before", "streams": [{"metric": "req.latency"}]}, actor=ACTOR
    )
    snapshot = chart_snapshots.create(
        acme, chart.id, duration=7200, end_time=BASE + 3600, surface="native", actor=ACTOR
    )
    spaces.update_chart(
        acme, space.id, chart.id, {"name": "After", "streams": [{"metric": "x.y"}]}, actor=ACTOR
    )
    spec, metadata = chart_snapshots.spec(snapshot)
    # Two hours on an 800-pixel chart: at most 720 points, so ten-second buckets. BASE - 1 falls
    # in the bucket starting at BASE - 10, BASE + 61 in the one at BASE + 60.
    assert spec.title == "Before" and metadata["resolution"] == 10
    assert lines(spec) == {
        "req.latency": [
            (BASE - 10, 99.0),
            (BASE + 10, 20.0),
            (BASE + 20, 30.0),
            (BASE + 60, (50.0 + 99.0) / 2),
        ]
    }


def test_a_long_window_draws_at_most_one_point_per_pixel_column() -> None:
    day = 86400
    # Up to an hour a chart keeps its seconds; past it, an 800-pixel chart has 720 columns.
    assert [chart_resolution(span, 800) for span in (600, 3600, day, 7 * day, 30 * day)] == [
        1,
        1,
        300,
        900,
        3600,
    ]
    assert chart_resolution(30 * day, 1600) == 3600  # 1,440 columns: still past 15 minutes
    assert chart_resolution(7 * day, 1600) == 900
    assert chart_resolution(day, 2400) == 60
