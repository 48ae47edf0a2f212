"""Composite expressions evaluated over stored series, against SQLite and PostgreSQL; the
parser's refusals and their positions; composite chart streams as drawn."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from snapshotd.config import Settings
from snapshotd.errors import BadRequest
from snapshotd.services.chart_snapshots import ChartSnapshots
from snapshotd.services.composite_charts import downsample
from snapshotd.services.composite_language import CompositeSyntaxError, parse
from snapshotd.services.composites import Composites, Line
from snapshotd.services.graph import make_queue
from snapshotd.services.metrics import Metrics
from snapshotd.services.samples import MetricChanges
from snapshotd.services.snapshots import Snapshots
from snapshotd.services.spaces import Spaces
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from tests.services.test_metrics_charts import ACTOR, BASE, lines, org, point

END = BASE + 240


@pytest.fixture
def metrics(any_db: Database) -> Metrics:
    return Metrics(any_db)


@pytest.fixture
def composites(metrics: Metrics) -> Composites:
    return Composites(metrics)


def submit(metrics: Metrics, acme: str) -> None:
    """errors and requests of two hosts, one point a minute for five minutes."""
    rows = {
        ("errors", "a"): [2, 4, 6, 1, 3],
        ("errors", "b"): [3, 1, 0, 5, 2],
        ("requests", "a"): [10, 20, 30, 10, 30],
        ("requests", "b"): [15, 30, 30, 40, 20],
    }
    samples = [
        point(name, value, BASE + 60 * i, {"host": host})
        for (name, host), values in rows.items()
        for i, value in enumerate(values)
    ]
    metrics.submit(acme, samples, {})


def points(line: Line) -> list[tuple[int, float]]:
    return list(zip(line.times.tolist(), np.round(line.values, 6).tolist(), strict=True))


def run(composites: Composites, acme: str, expression: str, **window: int) -> list[Line]:
    given = {"start": BASE, "end": END, "resolution": 60, **window}
    return composites.evaluate(acme, expression, **given)


def only(found: list[Line]) -> list[tuple[int, float]]:
    assert len(found) == 1, found
    return points(found[0])


def test_arithmetic_over_sums_gives_exact_values(
    composites: Composites, metrics: Metrics, any_db: Database
) -> None:
    acme = org(any_db, "acme")
    submit(metrics, acme)
    minutes = [BASE + 60 * i for i in range(5)]

    ratio = run(composites, acme, 'divide([sum(s("errors", "*")), sum(s("requests", "*"))])')
    assert only(ratio) == list(zip(minutes, [0.2, 0.1, 0.1, 0.12, 0.1], strict=True))
    assert ratio[0].metric == "divide" and ratio[0].tags == {}

    assert only(
        run(
            composites, acme, 'subtract([s("requests", {"host": "a"}), s("errors", {"host": "a"})])'
        )
    ) == list(zip(minutes, [8.0, 16.0, 24.0, 9.0, 27.0], strict=True))
    assert only(
        run(composites, acme, 'multiply([s("errors", {"host": "a"}), s("errors", {"host": "b"})])')
    ) == list(zip(minutes, [6.0, 4.0, 0.0, 5.0, 6.0], strict=True))
    for function, expected in (
        ("sum", [5, 5, 6, 6, 5]),
        ("mean", [2.5, 2.5, 3, 3, 2.5]),
        ("min", [2, 1, 0, 1, 2]),
        ("max", [3, 4, 6, 5, 3]),
    ):
        found = run(composites, acme, f'{function}(s("errors", "*"))')
        assert only(found) == list(zip(minutes, map(float, expected), strict=True)), function
        assert found[0].metric == "errors"

    # divide takes exactly two series; by zero gives no point
    assert run(composites, acme, 'divide(s("*s", "*"))') == []  # four series
    by_zero = run(
        composites, acme, 'divide([s("requests", {"host": "b"}), s("errors", {"host": "b"})])'
    )
    assert [t for t, _v in only(by_zero)] == [m for m in minutes if m != BASE + 120]


def test_series_options_tags_and_wildcards(
    composites: Composites, metrics: Metrics, any_db: Database
) -> None:
    acme = org(any_db, "acme")
    submit(metrics, acme)
    found = run(composites, acme, 's("errors", {"host": "a"})')
    assert [line.tags for line in found] == [{"host": "a"}]
    assert {tuple(sorted(line.tags.items())) for line in run(composites, acme, 's("*s", "*")')} == {
        (("host", "a"),),
        (("host", "b"),),
    }
    assert {line.metric for line in run(composites, acme, 's("*s", "*")')} == {"errors", "requests"}
    # period rolls up into five-minute buckets with the given function
    summed = run(composites, acme, 's("errors", {"host": "a"}, {period: "300", function: "sum"})')
    assert only(summed) == [(BASE - BASE % 300, 16.0)] and summed[0].period == 300
    counted = run(
        composites, acme, 's("errors", {"host": "a"}, {period: "300", function: "count"})'
    )
    assert only(counted) == [(BASE - BASE % 300, 5.0)]
    assert run(composites, acme, 's("never.sent", "*")') == []


def test_transformations_of_each_series(
    composites: Composites, metrics: Metrics, any_db: Database
) -> None:
    acme = org(any_db, "acme")
    submit(metrics, acme)
    a = 's("errors", {"host": "a"})'  # 2, 4, 6, 1, 3
    m = [BASE + 60 * i for i in range(5)]

    def values(expression: str) -> list[float]:
        found = run(composites, acme, expression)
        assert len(found) == 1
        return found[0].values.tolist()

    assert values(f'scale({a}, {{factor: "1/2"}})') == [1.0, 2.0, 3.0, 0.5, 1.5]
    assert values(f'scale({a}, {{factor: "10"}})') == [20.0, 40.0, 60.0, 10.0, 30.0]
    assert values(f'abs(scale({a}, {{factor: "-1"}}))') == [2.0, 4.0, 6.0, 1.0, 3.0]
    assert values(f"integrate({a})") == [2.0, 6.0, 12.0, 13.0, 16.0]
    assert only(run(composites, acme, f"derive({a})")) == [
        (m[1], 2.0),
        (m[2], 2.0),
        (m[3], -5.0),
        (m[4], 2.0),
    ]
    assert values(f'derive({a}, {{detect_reset: "true"}})') == [2.0, 2.0, 1.0, 2.0]
    assert values(f"rate({a})") == pytest.approx([2 / 60, 4 / 60, 0.1, 1 / 60, 0.05])
    assert values(f'rate({a}, {{duration: "60"}})') == pytest.approx([2.0, 4.0, 6.0, 1.0, 3.0])
    assert only(run(composites, acme, f'window({a}, {{size: "3", function: "max"}})')) == [
        (m[2], 6.0),
        (m[3], 6.0),
        (m[4], 6.0),
    ]
    assert values(f'moving_average({a}, {{size: "2"}})') == [3.0, 5.0, 3.5, 2.0]
    assert values(f'window({a}, {{size: "3", function: "median"}})') == [4.0, 4.0, 3.0]


def test_fills_filters_timeshift_and_group_by(
    composites: Composites, metrics: Metrics, any_db: Database
) -> None:
    acme = org(any_db, "acme")
    metrics.submit(
        acme,
        [point("sparse", 5, BASE + 60), point("sparse", 7, BASE + 180)],
        {},
    )
    grid = [BASE + 60 * i for i in range(5)]
    assert only(run(composites, acme, 'zero_fill(s("sparse", "*"))')) == list(
        zip(grid, [0.0, 5.0, 0.0, 7.0, 0.0], strict=True)
    )
    assert only(run(composites, acme, 'last_fill(s("sparse", "*"))')) == list(
        zip(grid[1:], [5.0, 5.0, 7.0, 7.0], strict=True)
    )
    assert only(run(composites, acme, 'fill(s("sparse", "*"), {value: "-1"})'))[0] == (BASE, -1.0)

    submit(metrics, acme)
    kept = run(composites, acme, 'filter(s("errors", "*"), {gt: "5", function: "max"})')
    assert [line.tags for line in kept] == [{"host": "a"}]
    kept = run(composites, acme, 'filter(s("errors", "*"), {lte: "2.2", function: "mean"})')
    assert [line.tags for line in kept] == [{"host": "b"}]

    # a week back, drawn over this window: the same points a week later
    week = 7 * 86400
    metrics.submit(acme, [point("weekly", 9, BASE + 60 - week), point("weekly", 4, BASE)], {})
    shifted = run(composites, acme, 'timeshift("0,1w", s("weekly", "*"))')
    assert [points(line) for line in shifted] == [[(BASE, 4.0)], [(BASE + 60, 9.0)]]
    ahead = run(composites, acme, 'timeshift("+1m", s("errors", {"host": "a"}))')
    assert only(ahead) == [(BASE + 60 * i, v) for i, v in enumerate([4.0, 6.0, 1.0, 3.0])]

    grouped = run(
        composites,
        acme,
        'group_by("host", divide([sum(s("errors", {"host": "*"})), '
        'sum(s("requests", {"host": "*"}))]))',
    )
    assert [line.tags for line in grouped] == [{"host": "a"}, {"host": "b"}]
    assert [v for _t, v in points(grouped[0])] == [0.2, 0.2, 0.2, 0.1, 0.1]
    assert [v for _t, v in points(grouped[1])] == [0.2, 0.033333, 0.0, 0.125, 0.1]


@pytest.mark.parametrize(
    ("expression", "message", "position"),
    [
        ('sum(s("cpu", "*")', "expected ')' but found the end", 17),
        ('sum(s("cpu", "*")) )', "unexpected ')' after the expression", 19),
        ('summ(s("cpu", "*"))', "unknown function 'summ'", 0),
        ('sum(s("cpu, "*"))', "expected ')' but found '*'", 13),
        ('sum (s("cpu"))', "expected '(' right after 'sum'", 3),
        ('scale(s("cpu"), {factr: "2"})', "scale() takes no option 'factr' (options: factor)", 16),
        ('divide([s("a"), "b"])', "expected a function or a set but found '\"'", 16),
        ('timeshift(1w, s("a"))', "expected ')' but found 'w'", 11),
        ('s("a", "*", {period: })', "expected a value but found '}'", 21),
        ("", "the composite expression is empty", 0),
    ],
)
def test_parse_errors_say_where(expression: str, message: str, position: int) -> None:
    with pytest.raises(CompositeSyntaxError) as raised:
        parse(expression)
    assert (raised.value.message, raised.value.position) == (message, position)
    assert str(raised.value) == f"{message} at position {position}"


def test_bad_option_values_are_400s_naming_compose(
    composites: Composites, any_db: Database
) -> None:
    acme = org(any_db, "acme")
    for expression, words in (
        ('scale(s("a"), {factor: "x"})', "scale() factor 'x' is not a number"),
        ('window(s("a"), {size: "65"})', "window() size must be a whole number from 1 to 64"),
        ('timeshift("1y", s("a"))', 'timeshift() takes shifts like "1w"'),
        ('group_by("", s("a"))', "group_by() needs one or more tag names"),
    ):
        with pytest.raises(BadRequest) as raised:
            run(composites, acme, expression)
        assert raised.value.field == "compose" and words in raised.value.detail, expression
        assert "at position" in raised.value.detail


def test_stored_composite_metrics(
    composites: Composites, metrics: Metrics, any_db: Database
) -> None:
    acme = org(any_db, "acme")
    expression = 'sum(s("errors", "*"))'
    changes = MetricChanges(type="composite", description="all errors")
    assert composites.put(acme, "errors.total", expression, changes) is True
    stored = metrics.get(acme, "errors.total")
    assert (stored.type, stored.composite, stored.description) == (
        "composite",
        expression,
        "all errors",
    )
    assert composites.put(acme, "errors.total", 'max(s("errors", "*"))', MetricChanges()) is False
    assert metrics.get(acme, "errors.total").composite == 'max(s("errors", "*"))'
    with pytest.raises(BadRequest, match="at position"):
        composites.put(acme, "broken", "sum(", MetricChanges())
    submit(metrics, acme)
    with pytest.raises(BadRequest, match="is a gauge"):
        composites.put(acme, "errors", expression, MetricChanges())
    # a composite has no series of its own: series() never reads one
    assert run(composites, acme, 's("errors.*", "*")') == []


def chart_spec(
    settings: Settings,
    db: Database,
    acme: str,
    raw: dict[str, Any],
    *,
    duration: int = 300,
    end: int = END + 59,
):
    spaces = Spaces(db)
    existing, _found, _total = spaces.find(acme, name="composites")
    space = existing[0] if existing else spaces.create(acme, "Composites", actor=ACTOR)
    chart = spaces.create_chart(acme, space.id, raw, actor=ACTOR)
    snapshots = Snapshots(settings, db, make_queue(settings, db), FileBlobStore(settings.blobs_dir))
    charts = ChartSnapshots(settings, snapshots, Metrics(db))
    snapshot = charts.create(
        acme, chart.id, duration=duration, end_time=end, surface="native", actor=ACTOR
    )
    return charts.spec(snapshot)


def test_composite_streams_are_drawn_in_every_chart_type(
    settings: Settings, metrics: Metrics, any_db: Database
) -> None:
    acme = org(any_db, "acme")
    submit(metrics, acme)
    ratio = 'divide([sum(s("errors", "*")), sum(s("requests", "*"))])'
    stream = {"composite": ratio, "name": "error ratio", "color": "#aa0000"}
    spec, metadata = chart_spec(settings, any_db, acme, {"name": "Ratio", "streams": [stream]})
    minutes = [float(BASE + 60 * i) for i in range(5)]
    assert lines(spec) == {
        "error ratio": list(zip(minutes, [0.2, 0.1, 0.1, 0.12, 0.1], strict=True))
    }
    assert spec.series[0].color == "#aa0000"
    assert metadata["streams"] == [{"composite": ratio, "lines": 1, "points": 5}]

    by_host = {"composite": 's("errors", "*")', "name": "errors"}
    plain = {"metric": "requests", "group_function": "sum"}
    spec, metadata = chart_spec(
        settings, any_db, acme, {"name": "Stack", "type": "stacked", "streams": [by_host, plain]}
    )
    assert spec.type == "stacked"
    assert [s.label for s in spec.series] == ["errors host=a", "errors host=b", "requests"]
    assert [s.values.tolist() for s in spec.series[:2]] == [[2, 4, 6, 1, 3], [3, 1, 0, 5, 2]]
    assert metadata["streams"][0] == {"composite": 's("errors", "*")', "lines": 2, "points": 10}

    for summary, value in (("average", 0.124), ("max", 0.2), ("sum", 0.62)):
        raw = {
            "name": "Big",
            "type": "bignumber",
            "streams": [{"composite": ratio, "summary_function": summary}],
        }
        spec, metadata = chart_spec(settings, any_db, acme, raw)
        assert spec.value == pytest.approx(value) and metadata["value"] == spec.value, summary


def test_composite_streams_are_checked_when_the_chart_is_saved(any_db: Database) -> None:
    acme = org(any_db, "acme")
    spaces = Spaces(any_db)
    space = spaces.create(acme, "Checked", actor=ACTOR)
    with pytest.raises(BadRequest) as raised:
        spaces.create_chart(
            acme, space.id, {"name": "x", "streams": [{"composite": 'sum(s("a")'}]}, actor=ACTOR
        )
    assert raised.value.field == "streams.0.composite"
    assert raised.value.detail == "expected ')' but found the end at position 10"
    bad = {"composite": 's("a")', "downsample_function": "median"}
    with pytest.raises(BadRequest, match="must be one of average, sum, min, max"):
        spaces.create_chart(acme, space.id, {"name": "x", "streams": [bad]}, actor=ACTOR)
    chart = spaces.create_chart(
        acme,
        space.id,
        {"name": "ok", "streams": [{"composite": 's("a")', "metric": "ignored"}]},
        actor=ACTOR,
    )
    assert chart.definition["streams"] == [
        {
            "id": 1,
            "composite": 's("a")',
            "type": "composite",
            "downsample_function": "average",
            "summary_function": "average",
        }
    ]


def test_downsample_combines_the_points_of_each_pixel_column() -> None:
    times = np.arange(0, 100, dtype=np.int64)
    line = Line("m", {}, times, np.arange(100, dtype=np.float64), 1)
    for function, expected in (
        ("average", [4.5, 14.5]),
        ("sum", [45.0, 145.0]),
        ("min", [0.0, 10.0]),
        ("max", [9.0, 19.0]),
    ):
        drawn_times, values = downsample(line, 0, 100, 10, function)
        assert values[:2].tolist() == expected, function
        assert drawn_times[:2].tolist() == [4.5, 14.5] and values.size == 10
    assert downsample(line, 0, 100, 200, "sum")[1].size == 100  # few enough points: kept


def test_a_composite_line_denser_than_the_plot_is_downsampled_by_its_function(
    settings: Settings, metrics: Metrics, any_db: Database
) -> None:
    acme = org(any_db, "acme")
    start = BASE - 3600
    metrics.submit(acme, [point("dense", i % 10, start + i) for i in range(3600)], {})
    drawn = {}
    for function in ("average", "sum", "max"):
        stream = {"composite": 's("dense")', "downsample_function": function}
        raw = {"name": function, "streams": [stream]}
        spec, metadata = chart_spec(settings, any_db, acme, raw, duration=3600, end=start + 3599)
        assert metadata["streams"][0]["points"] == 720  # the plot's pixel columns, not 3,600
        drawn[function] = spec.series[0].values
    assert drawn["sum"].sum() == 16200.0  # every point counted once
    assert drawn["max"].max() == 9.0 and (drawn["max"] >= drawn["average"]).all()
    assert drawn["average"].mean() == pytest.approx(4.5, abs=0.05)


def test_creating_one_composite_from_many_requests_at_once(
    composites: Composites, metrics: Metrics, any_db: Database
) -> None:
    acme = org(any_db, "acme")
    start = threading.Barrier(6)

    def create(index: int) -> bool:
        start.wait()
        expression = f'scale(s("errors", "*"), {{"factor": "{index + 1}"}})'
        return composites.put(acme, "errors.scaled", expression, MetricChanges(type="composite"))

    with ThreadPoolExecutor(6) as pool:
        created = list(pool.map(create, range(6)))
    assert created.count(True) == 1 and created.count(False) == 5
    assert metrics.get(acme, "errors.scaled").type == "composite"
