"""The chart engine: ChartSpecs to PNG, without a database."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from snapshotd.engines import charts
from snapshotd.engines.charts import PALETTE, ChartRenderer, ChartSpec, Series, reduce_to_columns

START = 1_700_000_000.0
END = START + 3600
GREY = "#777777"  # the "no data" text


def wave(label: str, points: int, level: float, color: str | None = None) -> Series:
    times = np.linspace(START, END, points)
    return Series(label, times, level + 10 * np.sin((times - START) / 300), color)


LINE = ChartSpec(
    "line", "Latency", START, END, [wave("a", 5000, 20), wave("b", 5000, 50)], width=640, height=320
)
STACKED = ChartSpec(
    "stacked",
    "Requests",
    START,
    END,
    [wave("a", 900, 20), wave("b", 700, 30)],
    width=500,
    height=300,
)
BIGNUMBER = ChartSpec(
    "bignumber", "Total", START, END, value=1_234_567.0, units="req", width=400, height=200
)


def image(png: bytes) -> Image.Image:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    picture = Image.open(io.BytesIO(png))
    picture.load()
    assert picture.format == "PNG"
    return picture.convert("RGB")


def pixels(picture: Image.Image) -> np.ndarray:
    return np.asarray(picture).reshape(-1, 3)


def rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def count(picture: Image.Image, color: str) -> int:
    return int((pixels(picture) == rgb(color)).all(axis=1).sum())


def colours(picture: Image.Image) -> int:
    found = picture.getcolors(maxcolors=picture.width * picture.height)
    assert found is not None
    return len(found)


# -- rendering ------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [LINE, STACKED, BIGNUMBER], ids=lambda s: s.type)
def test_renders_a_png_of_the_requested_size(spec: ChartSpec) -> None:
    picture = image(ChartRenderer().render(spec))
    assert picture.size == (spec.width, spec.height)
    assert colours(picture) > 50  # axes, anti-aliased lines and text: not a blank picture
    white = count(picture, "#ffffff")
    assert 0.3 * picture.width * picture.height < white < picture.width * picture.height


@pytest.mark.parametrize("spec", [LINE, STACKED], ids=lambda s: s.type)
def test_streams_are_drawn_in_palette_order(spec: ChartSpec) -> None:
    picture = image(ChartRenderer().render(spec))
    assert count(picture, PALETTE[0]) > 100
    assert count(picture, PALETTE[1]) > 100
    assert count(picture, PALETTE[2]) == 0  # a third colour only for a third stream


def test_a_stream_colour_overrides_the_palette() -> None:
    spec = replace(LINE, series=[wave("a", 5000, 20, "#123456"), wave("b", 5000, 50)])
    picture = image(ChartRenderer().render(spec))
    assert count(picture, "#123456") > 100
    assert count(picture, PALETTE[0]) == 0
    # the second stream keeps the palette's second colour
    assert count(picture, PALETTE[1]) > 100


def test_a_point_with_no_neighbour_is_marked() -> None:
    def one(value: float) -> ChartSpec:
        series = Series("one round", np.array([START + 1800.0]), np.array([value]))
        return replace(LINE, series=[series])

    marked = count(image(ChartRenderer().render(one(20.0))), PALETTE[0])
    legend_only = count(image(ChartRenderer().render(one(np.nan))), PALETTE[0])
    assert marked > legend_only + 5


@pytest.mark.parametrize(
    "spec",
    [
        replace(LINE, series=[]),
        replace(LINE, series=[Series.of("empty", [])]),
        replace(LINE, series=[Series.of("empty", [])], log_y=True, y_min=1.0),
        replace(STACKED, series=[]),
        replace(BIGNUMBER, value=None),
    ],
    ids=["line", "line-empty-series", "line-log", "stacked", "bignumber"],
)
def test_an_empty_spec_renders_a_no_data_picture(spec: ChartSpec) -> None:
    picture = image(ChartRenderer().render(spec))
    assert picture.size == (spec.width, spec.height)
    assert count(picture, GREY) > 300  # the large grey "No data" text
    assert all(count(picture, color) == 0 for color in PALETTE[:7])


def test_a_bignumber_without_value_differs_from_one_with_a_value() -> None:
    renderer = ChartRenderer()
    shown = image(renderer.render(BIGNUMBER))
    missing = image(renderer.render(replace(BIGNUMBER, value=None)))
    assert count(missing, GREY) > 2 * count(shown, GREY)
    assert count(shown, "#000000") > count(missing, "#000000")  # the bold value in black


def test_y_ticks_use_the_k_m_g_number_format(monkeypatch: pytest.MonkeyPatch) -> None:
    formatted: list[float] = []
    original = charts._format_number

    def spy(value: float) -> str:
        formatted.append(value)
        return original(value)

    monkeypatch.setattr(charts, "_format_number", spy)
    millions = Series.of("big", [(START, 1e6), (START + 1800, 2.5e6), (END, 1.5e6)])
    ChartRenderer().render(replace(LINE, series=[millions]))
    assert formatted and max(formatted) >= 1e6


# -- determinism and frame reuse ------------------------------------------------------------------


@pytest.mark.parametrize("spec", [LINE, STACKED, BIGNUMBER], ids=lambda s: s.type)
def test_the_same_spec_renders_the_same_bytes(spec: ChartSpec) -> None:
    renderer = ChartRenderer()
    first = renderer.render(spec)
    assert renderer.render(spec) == first
    assert ChartRenderer().render(spec) == first  # a kept frame draws what a fresh one does


@pytest.mark.parametrize(
    "between",
    [
        replace(LINE, width=500, height=250),
        replace(LINE, width=320, height=640, title="Tall"),
        replace(LINE, log_y=True, y_min=1.0, y_max=1000.0, y_label="ms", title="Log"),
        replace(LINE, series=[]),
        replace(LINE, type="stacked"),
        replace(LINE, type="bignumber", value=3.0),
        replace(LINE, series=[wave("c", 50, 5, "#123456")]),
        replace(LINE, end=START + 7 * 86400),
    ],
    ids=["size", "tall", "log", "empty", "stacked", "bignumber", "one-stream", "week"],
)
def test_a_render_in_between_does_not_disturb_frame_reuse(between: ChartSpec) -> None:
    renderer = ChartRenderer()
    first = renderer.render(LINE)
    other = renderer.render(between)
    assert image(other).size == (between.width, between.height)
    assert renderer.render(LINE) == first


# -- reducing a line to pixel columns -------------------------------------------------------------


def brute_force_columns(
    series: Series, start: float, end: float, columns: int
) -> dict[int, tuple[float, float]]:
    """Each pixel column's lowest and highest value, one column at a time."""
    column = np.floor((series.times - start) * (columns / (end - start))).astype(np.int64)
    out = {}
    for index in np.unique(column):
        values = series.values[column == index]
        out[int(index)] = (float(values.min()), float(values.max()))
    return out


def reduced_columns(
    reduced: Series, start: float, end: float, columns: int
) -> dict[int, tuple[float, float]]:
    centers, lows, highs = reduced.times[0::2], reduced.values[0::2], reduced.values[1::2]
    assert np.array_equal(centers, reduced.times[1::2])  # two points a column, at its centre
    assert np.all(np.diff(centers) > 0)  # in time order, each column once
    index = np.floor((centers - start) * (columns / (end - start))).astype(np.int64)
    expected_centers = start + (index + 0.5) * ((end - start) / columns)
    assert np.allclose(centers, expected_centers)
    return {int(i): (float(lo), float(hi)) for i, lo, hi in zip(index, lows, highs, strict=True)}


def random_walk(seed: int, points: int, *, gaps: bool = False) -> Series:
    rng = np.random.default_rng(seed)
    times = np.sort(rng.uniform(START, END, points))
    if gaps:  # whole stretches of columns with no point at all
        times = times[((times - START) // 300) % 3 != 1]
    values = np.cumsum(rng.normal(0, 1, times.size))
    values[rng.integers(0, times.size, 5)] += rng.choice([-500.0, 500.0], 5)  # lone spikes
    return Series("walk", times, values, "#123456")


@pytest.mark.parametrize(
    ("seed", "points", "columns", "gaps"),
    [
        (1, 20_000, 576, False),
        (2, 5_000, 100, True),
        (3, 100_000, 1, False),
        (4, 3_000, 1499, False),
    ],
)
def test_reduce_to_columns_keeps_every_columns_min_and_max(
    seed: int, points: int, columns: int, gaps: bool
) -> None:
    series = random_walk(seed, points, gaps=gaps)
    assert series.times.size > 2 * columns
    reduced = reduce_to_columns(series, START, END, columns)
    assert (reduced.label, reduced.color) == (series.label, series.color)
    assert reduced.times.size <= 2 * columns and reduced.times.size == reduced.values.size
    assert reduced_columns(reduced, START, END, columns) == brute_force_columns(
        series, START, END, columns
    )
    assert reduced.values.min() == series.values.min()
    assert reduced.values.max() == series.values.max()


@pytest.mark.parametrize("points", [0, 1, 2, 200])
def test_reduce_to_columns_leaves_short_series_unchanged(points: int) -> None:
    series = random_walk(5, 10_000)
    short = Series("short", series.times[:points], series.values[:points])
    assert reduce_to_columns(short, START, END, 100) is short


def test_reduce_to_columns_leaves_an_empty_window_unchanged() -> None:
    series = random_walk(6, 10_000)
    assert reduce_to_columns(series, END, START, 100) is series
    assert reduce_to_columns(series, START, START, 100) is series
