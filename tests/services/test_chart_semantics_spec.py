"""Chart semantics in what a snapshot draws, and annotation streams, on SQLite and PostgreSQL:
counters as rates, transform_function, thresholds, stream axis bounds and units, group and
summary functions on every chart type, and annotation events as markers."""

from __future__ import annotations

from typing import Any

import pytest

from snapshotd.config import Settings
from snapshotd.engines.chart_semantics import Threshold
from snapshotd.engines.charts import ChartSpec, Marker
from snapshotd.errors import BadRequest, NotFound
from snapshotd.services.annotations import Annotations
from snapshotd.services.chart_snapshots import ChartSnapshots
from snapshotd.services.graph import make_queue
from snapshotd.services.metrics import Metrics
from snapshotd.services.samples import MetricProps
from snapshotd.services.snapshots import Snapshots
from snapshotd.services.spaces import Spaces
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from tests.services.test_metrics_charts import ACTOR, BASE, lines, org, point


@pytest.fixture
def annotations(any_db: Database) -> Annotations:
    return Annotations(any_db)


@pytest.fixture
def metrics(any_db: Database) -> Metrics:
    return Metrics(any_db)


@pytest.fixture
def charts(
    any_db: Database,
    settings: Settings,
    blobs: FileBlobStore,
    metrics: Metrics,
    annotations: Annotations,
) -> ChartSnapshots:
    snapshots = Snapshots(settings, any_db, make_queue(settings, any_db), blobs)
    return ChartSnapshots(settings, snapshots, metrics, annotations)


def draw(
    charts: ChartSnapshots, org_id: str, raw: dict[str, Any], **snapshot: Any
) -> tuple[ChartSpec, dict[str, Any]]:
    spaces = Spaces(charts.snapshots.db)
    found, _count, _total = spaces.find(org_id, name="semantics")
    space = found[0] if found else spaces.create(org_id, "Semantics", actor=ACTOR)
    chart = spaces.create_chart(org_id, space.id, raw, actor=ACTOR)
    window = {"duration": 300, "end_time": BASE + 300, **snapshot}
    made = charts.create(org_id, chart.id, surface="native", actor=ACTOR, **window)
    return charts.spec(made)


def submit_counters(metrics: Metrics, acme: str) -> None:
    """Two hosts' request counters every 60 s; web-2 restarts between +120 and +180."""
    totals = {"web-1": [100, 160, 280, 400, 460], "web-2": [1000, 1030, 1060, 15, 45]}
    samples = [
        point("requests", total, BASE + 60 * i, {"host": host})
        for host, series in totals.items()
        for i, total in enumerate(series)
    ]
    metrics.submit(acme, samples, {"requests": MetricProps(type="counter", period=60)})


def test_counters_are_drawn_as_rates_per_period(
    charts: ChartSnapshots, metrics: Metrics, any_db: Database
) -> None:
    acme = org(any_db, "acme")
    submit_counters(metrics, acme)
    breakout = {"metric": "requests", "group_function": "breakout"}
    spec, _metadata = draw(charts, acme, {"name": "Requests", "streams": [breakout]})
    t = [BASE + 60, BASE + 120, BASE + 180, BASE + 240]
    assert lines(spec) == {
        "requests host=web-1": list(zip(t, [60.0, 120.0, 120.0, 60.0], strict=True)),
        # the restart counts from zero: 15 requests, not -1045
        "requests host=web-2": list(zip(t, [30.0, 30.0, 15.0, 30.0], strict=True)),
    }
    # sources are combined after each became a rate; a stream period overrides the metric's
    summed = {"metric": "requests", "group_function": "sum", "period": 1}
    spec, _metadata = draw(charts, acme, {"name": "Per second", "streams": [summed]})
    assert lines(spec) == {"requests": list(zip(t, [1.5, 2.5, 2.25, 1.5], strict=True))}
    # a big number summarizes the rates, not the running totals
    big = {"metric": "requests", "group_function": "sum", "summary_function": "max"}
    spec, metadata = draw(charts, acme, {"name": "Peak", "type": "bignumber", "streams": [big]})
    assert spec.value == metadata["value"] == 150.0


def test_transform_function_applies_to_every_drawn_value(
    charts: ChartSnapshots, metrics: Metrics, any_db: Database
) -> None:
    acme = org(any_db, "acme")
    metrics.submit(
        acme,
        [point("bytes", v, BASE + 10 * i) for i, v in enumerate([1024, 2048, 0, 4096])],
        {"bytes": MetricProps(period=10)},
    )
    stream = {"metric": "bytes", "transform_function": "x / 1024 * 8"}
    spec, _metadata = draw(charts, acme, {"name": "Kbit", "streams": [stream]})
    assert [v for _t, v in lines(spec)["bytes"]] == [8.0, 16.0, 0.0, 32.0]
    # p is the period; a division by zero leaves that point out
    stream = {"metric": "bytes", "transform_function": "p * 1024 / x"}
    spec, _metadata = draw(charts, acme, {"name": "Inverse", "streams": [stream]})
    assert lines(spec)["bytes"] == [(BASE, 10.0), (BASE + 10, 5.0), (BASE + 30, 2.5)]
    # on every chart type: the big number shows the transformed summary
    stream = {"metric": "bytes", "transform_function": "x/1024", "summary_function": "sum"}
    spec, _metadata = draw(charts, acme, {"name": "B", "type": "bignumber", "streams": [stream]})
    assert spec.value == 7.0
    spec, _metadata = draw(charts, acme, {"name": "S", "type": "stacked", "streams": [stream]})
    assert [v for _t, v in lines(spec)["bytes"]] == [1.0, 2.0, 0.0, 4.0]
    # a formula outside the language is refused when the chart is saved
    for bad in ("x ** 2", "__import__('os')", "x +"):
        with pytest.raises(BadRequest) as refused:
            draw(
                charts,
                acme,
                {"name": "Bad", "streams": [{"metric": "b", "transform_function": bad}]},
            )
        assert refused.value.field == "streams.0.transform_function"


def test_thresholds_axis_bounds_and_units(
    charts: ChartSnapshots, metrics: Metrics, any_db: Database
) -> None:
    acme = org(any_db, "acme")
    metrics.submit(acme, [point("cpu", 42, BASE + 5)], {})
    streams = [
        {"metric": "cpu", "min": 0, "max": 80, "units_short": "%", "units_long": "percent"},
        {"metric": "cpu", "min": -5, "max": 100, "units_short": "%", "units_long": "percent"},
    ]
    thresholds = [
        {"operator": ">", "value": 90, "type": "red"},
        {"operator": ">", "value": 70, "type": "yellow"},
    ]
    raw = {"name": "CPU", "streams": streams, "thresholds": thresholds}
    spec, _metadata = draw(charts, acme, raw)
    assert spec.thresholds == [Threshold(">", 90.0, "red"), Threshold(">", 70.0, "yellow")]
    assert (spec.y_min, spec.y_max) == (-5, 100)  # the widest of the streams' bounds
    assert (spec.y_label, spec.y_units) == ("percent", "%")
    spec, _metadata = draw(charts, acme, {**raw, "min": 10, "label": "Load"})
    assert (spec.y_min, spec.y_max, spec.y_label) == (10, 100, "Load")  # the chart's own win
    mixed = [streams[0], {"metric": "cpu", "units_short": "ms"}]
    spec, _metadata = draw(charts, acme, {"name": "Mixed", "streams": mixed})
    assert (spec.y_label, spec.y_units, spec.thresholds) == ("", "", [])
    big = {"name": "Big", "type": "bignumber", "streams": streams[:1], "thresholds": thresholds}
    spec, _metadata = draw(charts, acme, big)
    assert (spec.value, spec.units, len(spec.thresholds)) == (42.0, "%", 2)
    with pytest.raises(BadRequest) as refused:
        draw(charts, acme, {**raw, "thresholds": [{"operator": "~", "value": 1}]})
    assert refused.value.field == "thresholds.0.operator"


def test_breakout_and_group_functions_on_a_big_number(
    charts: ChartSnapshots, metrics: Metrics, any_db: Database
) -> None:
    acme = org(any_db, "acme")
    metrics.submit(
        acme,
        [
            point("q", 10, BASE + 10, {"host": "a"}),
            point("q", 30, BASE + 10, {"host": "b"}),
            point("q", 20, BASE + 20, {"host": "a"}),
        ],
        {},
    )

    def value(group: str, summary: str) -> float | None:
        stream = {"metric": "q", "group_function": group, "summary_function": summary}
        return draw(charts, acme, {"name": group, "type": "bignumber", "streams": [stream]})[
            0
        ].value

    assert value("sum", "sum") == 60.0  # 40 at +10, 20 at +20
    assert value("max", "min") == 20.0
    assert value("average", "sum") == 40.0  # 20 at +10, 20 at +20
    assert value("breakout", "sum") == 40.0  # a single number averages the series first


def test_annotation_streams_events_and_tenancy(annotations: Annotations, any_db: Database) -> None:
    acme, rival = org(any_db, "acme"), org(any_db, "rival")
    stream, first = annotations.create_event(
        acme,
        "Deploys",
        {
            "title": "v42",
            "source": "web-1",
            "start_time": BASE,
            "links": [{"rel": "ci", "href": "https://ci.example/42", "label": "build"}],
        },
        actor=ACTOR,
    )
    _same, second = annotations.create_event(
        acme, "deploys", {"title": "v43", "start_time": BASE + 60}, actor=ACTOR
    )
    assert stream.id == _same.id and stream.name == "Deploys"  # names are case-insensitive
    assert first.links == [{"rel": "ci", "href": "https://ci.example/42", "label": "build"}]
    items, found, total = annotations.find(acme)
    assert ([s.name for s in items], found, total) == (["Deploys"], 1, 1)
    assert annotations.find(rival) == ([], 0, 0)
    with pytest.raises(NotFound):
        annotations.events(rival, "deploys", start=0, end=BASE + 600)
    with pytest.raises(NotFound):
        annotations.event(rival, "deploys", first.id)

    _s, events = annotations.events(acme, "deploys", start=BASE, end=BASE + 600)
    assert [e.title for e in events] == ["v42", "v43"]
    _s, events = annotations.events(acme, "deploys", start=0, end=BASE + 600, sources=["web-*"])
    assert [e.title for e in events] == ["v42"]
    _s, events = annotations.events(acme, "deploys", start=BASE + 1, end=BASE + 600)
    assert [e.title for e in events] == ["v43"]

    annotations.update_event(
        acme, "deploys", second.id, {"description": "rolled", "end_time": BASE + 120}, actor=ACTOR
    )
    _s, changed = annotations.event(acme, "deploys", second.id)
    assert (changed.description, changed.end_time, changed.title) == ("rolled", BASE + 120, "v43")
    annotations.add_link(
        acme, "deploys", second.id, {"rel": "pr", "href": "http://x.test/1"}, actor=ACTOR
    )
    annotations.delete_link(acme, "deploys", first.id, "ci", actor=ACTOR)
    assert annotations.event(acme, "deploys", first.id)[1].links == []
    assert annotations.update_stream(acme, "DEPLOYS", {"display_name": "Deploys"}, actor=ACTOR)

    for bad, field in (
        ({}, "title"),
        ({"title": "x", "start_time": "soon"}, "start_time"),
        ({"title": "x", "start_time": BASE, "end_time": BASE - 1}, "end_time"),
        ({"title": "x", "links": [{"rel": "a", "href": "javascript:alert(1)"}]}, "links.0.href"),
        ({"title": "x", "links": [{"rel": "a", "href": "http://a"}] * 2}, "links"),
        ({"title": "x", "source": "bad source"}, "source"),
        ({"title": "t" * 256}, "title"),
    ):
        with pytest.raises(BadRequest) as refused:
            annotations.create_event(acme, "deploys", bad, actor=ACTOR)
        assert refused.value.field == field, bad
    with pytest.raises(BadRequest):
        annotations.create_event(acme, "bad name", {"title": "x"}, actor=ACTOR)

    annotations.delete_event(acme, "deploys", first.id, actor=ACTOR)
    with pytest.raises(NotFound):
        annotations.event(acme, "deploys", first.id)
    annotations.delete_stream(acme, "deploys", actor=ACTOR)
    assert annotations.find(acme)[0] == []


def test_annotation_events_in_the_window_are_drawn_as_markers(
    charts: ChartSnapshots, metrics: Metrics, annotations: Annotations, any_db: Database
) -> None:
    acme, rival = org(any_db, "acme"), org(any_db, "rival")
    metrics.submit(acme, [point("cpu", 1, BASE + 5)], {})
    for name, title, start, end in (
        ("deploys-api", "api v1", BASE + 30, None),
        ("deploys-web", "web v7", BASE + 100, None),
        ("batch", "nightly", BASE - 100, BASE + 50),  # began before the window, ends in it
        ("batch", "too early", BASE - 100, BASE - 10),
        ("deploys-api", "too late", BASE + 301, None),
    ):
        fields = {"title": title, "start_time": start, "end_time": end}
        annotations.create_event(acme, name, fields, actor=ACTOR)
    annotations.create_event(
        rival, "deploys-api", {"title": "theirs", "start_time": BASE + 40}, actor=ACTOR
    )

    raw = {"name": "CPU", "streams": [{"metric": "cpu"}], "annotations": ["deploys-*", "batch"]}
    spec, metadata = draw(charts, acme, raw)
    assert spec.markers == [
        Marker(BASE - 100, "nightly", BASE + 50),
        Marker(BASE + 30, "api v1"),
        Marker(BASE + 100, "web v7"),
    ]
    assert metadata["markers"] == 3
    # the snapshot's own choice wins over the chart's; none by default
    spec, _metadata = draw(charts, acme, raw, annotations=["deploys-web"])
    assert [m.title for m in spec.markers] == ["web v7"]
    spec, _metadata = draw(charts, acme, {"name": "Plain", "streams": [{"metric": "cpu"}]})
    assert spec.markers == []
    spec, metadata = draw(charts, acme, {**raw, "type": "bignumber"})
    assert spec.markers == [] and metadata["markers"] == 0  # no time axis to mark
    with pytest.raises(BadRequest) as refused:
        draw(charts, acme, raw, annotations=["no spaces allowed"])
    assert refused.value.field == "subject.chart.annotations.0"
