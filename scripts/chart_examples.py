"""Renders the example chart images in docs/images with the chart engine (`make docs-images`).

The data is synthetic but shaped like what people chart: request latency per host, traffic by
region stacked, and a queue depth as a big number.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from snapshotd.engines.charts import ChartRenderer, ChartSpec, Series

END = datetime(2026, 3, 2, 15, 0, tzinfo=UTC).timestamp()
START = END - 3600


def _walk(seed: int, base: float, spread: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(base + np.cumsum(rng.normal(0, spread, 3600)), 0, None)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    times = np.arange(START, END, 1.0)
    renderer = ChartRenderer()
    line = ChartSpec(
        "line",
        "API latency p95 by host",
        START,
        END,
        [Series(f"web-{i}", times, _walk(i, 120 + 40 * i, 2.0)) for i in range(1, 4)],
        y_label="ms",
    )
    minutes = np.arange(START, END, 60.0)
    stacked = ChartSpec(
        "stacked",
        "Requests per minute by region",
        START,
        END,
        [
            Series(region, minutes, _walk(10 + i, 300 + 150 * i, 12.0)[:60])
            for i, region in enumerate(("eu-west", "us-east", "ap-south"))
        ],
    )
    big = ChartSpec("bignumber", "Jobs waiting", START, END, value=1284, units="jobs")
    for name, spec in (("line", line), ("stacked", stacked), ("bignumber", big)):
        path = out / f"chart-{name}.png"
        path.write_bytes(renderer.render(spec))
        print(path)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/images"))
