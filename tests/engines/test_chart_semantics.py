"""Chart semantics without a database: transform formulas, counter rates, thresholds, and the
thresholds and annotation markers a rendered chart shows."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from snapshotd.engines.chart_semantics import (
    THRESHOLD_COLORS,
    Threshold,
    counter_rates,
    parse_thresholds,
    parse_transform,
    threshold_color,
)
from snapshotd.engines.charts import ChartRenderer, ChartSpec, Marker, Series
from snapshotd.errors import BadRequest
from tests.engines.test_charts import image, pixels, rgb

START = 1_700_000_000.0
END = START + 600
MARKER = "#7A3E9D"


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        ("x", [1.0, -2.0, 4.0]),
        ("x*8", [8.0, -16.0, 32.0]),
        ("x / p", [0.1, -0.2, 0.4]),
        ("(x + 1) * 2 - 3", [1.0, -5.0, 7.0]),
        ("-x", [-1.0, 2.0, -4.0]),
        ("2 - -x", [3.0, 0.0, 6.0]),
        ("x*p/60", [1 / 6, -2 / 6, 4 / 6]),
        ("abs(x)", [1.0, 2.0, 4.0]),
        ("max(x, 0)", [1.0, 0.0, 4.0]),
        ("min(x, 2, 3)", [1.0, -2.0, 2.0]),
        ("1.5 * X + .5", [2.0, -2.5, 6.5]),
        ("10", [10.0, 10.0, 10.0]),
    ],
)
def test_transforms_evaluate_arithmetic_in_x_and_p(formula: str, expected: list[float]) -> None:
    values = np.array([1.0, -2.0, 4.0])
    assert parse_transform(formula).apply(values, 10.0).tolist() == pytest.approx(expected)


def test_a_division_by_zero_leaves_a_gap() -> None:
    result = parse_transform("1/x").apply(np.array([2.0, 0.0, -4.0]), 60.0)
    assert result[0] == 0.5 and np.isnan(result[1]) and result[2] == -0.25


@pytest.mark.parametrize(
    "formula",
    [
        "",
        "   ",
        "x +",
        "(x",
        "x)",
        "x ** 2",
        "y",
        "__import__('os')",
        "x.real",
        "abs(x, 2)",
        "max(x)",
        "x; 1",
        "1" + "0" * 320,
        "(" * 40 + "x" + ")" * 40,
        "x" + "+x" * 200,
        42,
        None,
    ],
)
def test_anything_but_the_small_language_is_refused(formula: object) -> None:
    with pytest.raises(BadRequest) as refused:
        parse_transform(formula, "streams.0.transform_function")
    assert refused.value.field == "streams.0.transform_function"


def test_counters_become_increases_per_period_across_a_restart() -> None:
    times = np.array([0.0, 60.0, 120.0, 180.0, 300.0])
    totals = np.array([100.0, 160.0, 280.0, 30.0, 90.0])  # restarted before t=180
    drawn_times, rates = counter_rates(times, totals, 60.0)
    assert drawn_times.tolist() == [60.0, 120.0, 180.0, 300.0]
    assert rates.tolist() == [60.0, 120.0, 30.0, 30.0]  # the last spans two minutes
    per_second = counter_rates(times, totals, 1.0)[1]
    assert per_second.tolist() == [1.0, 2.0, 0.5, 0.5]
    one = counter_rates(times[:1], totals[:1], 60.0)
    assert one[0].size == 0 and one[1].size == 0


def test_thresholds_are_checked_and_coloured() -> None:
    thresholds = parse_thresholds(
        [{"operator": ">", "value": 90, "type": "red"}, {"operator": ">", "value": "70"}]
    )
    assert thresholds == [Threshold(">", 90.0, "red"), Threshold(">", 70.0, "red")]
    mixed = [Threshold(">", 90.0, "red"), Threshold(">", 70.0, "yellow")]
    assert threshold_color(95.0, mixed) == THRESHOLD_COLORS["red"]
    assert threshold_color(75.0, mixed) == THRESHOLD_COLORS["yellow"]
    assert threshold_color(50.0, mixed) is None and threshold_color(None, mixed) is None
    assert threshold_color(3.0, [Threshold("=", 3.0, "yellow")]) == THRESHOLD_COLORS["yellow"]
    assert threshold_color(1.0, [Threshold("<", 3.0, "red")]) == THRESHOLD_COLORS["red"]
    assert parse_thresholds(None) == []
    for bad, field in (
        ("red", "thresholds"),
        ([{"operator": ">=", "value": 1}], "thresholds.0.operator"),
        ([{"operator": ">", "value": 1, "type": "blue"}], "thresholds.0.type"),
        ([{"operator": ">", "value": "lots"}], "thresholds.0.value"),
        ([{"operator": ">", "value": True}], "thresholds.0.value"),
        ([{"operator": ">", "value": "nan"}], "thresholds.0.value"),
        ([{"operator": ">", "value": 1}] * 11, "thresholds"),
    ):
        with pytest.raises(BadRequest) as refused:
            parse_thresholds(bad)
        assert refused.value.field == field


def count(picture: Image.Image, color: str) -> int:
    """Pixels close to `color`: lines and text are anti-aliased."""
    distance = np.abs(pixels(picture).astype(int) - np.array(rgb(color))).sum(axis=1)
    return int((distance < 80).sum())


def flat(label: str, level: float) -> Series:
    times = np.linspace(START, END, 60)
    return Series(label, times, np.full(60, level), "#0072B2")


def test_thresholds_and_markers_are_drawn_on_line_and_stacked_charts() -> None:
    renderer = ChartRenderer()
    red, yellow = THRESHOLD_COLORS["red"], THRESHOLD_COLORS["yellow"]
    for kind in ("line", "stacked"):
        plain = ChartSpec(kind, "Load", START, END, [flat("load", 50.0)])  # type: ignore[arg-type]
        marked = ChartSpec(
            kind,  # type: ignore[arg-type]
            "Load",
            START,
            END,
            [flat("load", 50.0)],
            thresholds=[Threshold(">", 80.0, "red"), Threshold(">", 65.0, "yellow")],
            markers=[Marker(START + 120, "deploy v42"), Marker(START + 300, "batch", START + 420)],
        )
        before, after = image(renderer.render(plain)), image(renderer.render(marked))
        assert count(before, red) == count(before, yellow) == count(before, MARKER) == 0
        assert count(after, red) > 100 and count(after, yellow) > 100, kind
        assert count(after, MARKER) > 300, kind  # two full-height lines and the titles
        # the frame is reused: the next plain render carries nothing over
        again = image(renderer.render(plain))
        assert count(again, red) == count(again, MARKER) == 0


def test_a_big_number_takes_the_colour_of_the_threshold_it_crosses() -> None:
    renderer = ChartRenderer()
    red = THRESHOLD_COLORS["red"]
    limits = [Threshold(">", 100.0, "red")]
    calm = ChartSpec("bignumber", "Queue", START, END, value=42.0, thresholds=limits)
    alarm = ChartSpec("bignumber", "Queue", START, END, value=420.0, thresholds=limits)
    assert count(image(renderer.render(calm)), red) == 0
    assert count(image(renderer.render(alarm)), red) > 500
