"""Composite metric cost: `divide([sum(s("errors","*")), sum(s("requests","*"))])` over seven days
against the plain read of the same series (both metrics, every host, the same roll-up), in this
process on one SQLite file, so the ratio is what the composite adds to reading its data.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.report import Row
from bench.stats import Series
from snapshotd.config import Settings
from snapshotd.services.accounts import Accounts, ensure_org
from snapshotd.services.composites import Composites
from snapshotd.services.metrics import Metrics
from snapshotd.services.samples import Sample
from snapshotd.store.db import Database

EXPRESSION = 'divide([sum(s("errors", "*")), sum(s("requests", "*"))])'
DAYS = 7
PERIOD = 60
HOSTS = 3
CHUNK = 5000


@dataclass
class CompositeResult:
    samples: int
    resolutions: list[tuple[int, Series, Series]]  # resolution, composite, plain read


def _submit(metrics: Metrics, org_id: str, end: int) -> int:
    start = end - DAYS * 86400
    batch: list[Sample] = []
    count = 0
    for name, scale in (("errors", 1.0), ("requests", 40.0)):
        for host in range(HOSTS):
            tags = (("host", f"web-{host}"),)
            for when in range(start, end, PERIOD):
                value = scale * (1 + (when // PERIOD + host) % 7)
                batch.append(Sample(name, tags, when, 1, value, value, value))
                if len(batch) == CHUNK:
                    count += metrics.submit(org_id, batch, {})
                    batch = []
    return count + metrics.submit(org_id, batch, {})


def _timed(first: Callable[[], object], second: Callable[[], object], times: int):
    """Both, alternately (so a change in the machine's load falls on both alike), after one
    warm-up call each (the page cache and SQLite's statement cache)."""
    first(), second()
    a, b = Series(), Series()
    for _ in range(times):
        for work, series in ((first, a), (second, b)):
            began = time.perf_counter()
            work()
            series.add(time.perf_counter() - began)
    return a, b


def run(quick: bool, say: Callable[[str], None]) -> CompositeResult:
    with tempfile.TemporaryDirectory(prefix="bench-composites-") as root:
        settings = Settings(data_dir=Path(root) / "data")
        db = Database.from_url(settings.resolved_database_url)
        try:
            db.migrate()
            Accounts(db).create_token(org="bench", email="b@bench.test", role="admin")
            with db.session() as session:
                org_id = ensure_org(session, "bench").id
            metrics = Metrics(db)
            composites = Composites(metrics)
            end = int(time.time()) // 3600 * 3600
            say(f"composites: storing {DAYS} days x {HOSTS} hosts x 2 metrics at {PERIOD} s")
            samples = _submit(metrics, org_id, end)
            start = end - DAYS * 86400
            rounds = 5 if quick else 15
            results = []
            for resolution in (PERIOD, 3600):
                say(f"composites: {rounds} reads of {DAYS} days at {resolution} s, each way")

                def composite(resolution: int = resolution) -> object:
                    return composites.evaluate(
                        org_id, EXPRESSION, start=start, end=end, resolution=resolution
                    )

                def plain(resolution: int = resolution) -> object:
                    return [
                        metrics.read_values(
                            org_id, name, start=start, end=end, resolution=resolution
                        )
                        for name in ("errors", "requests")
                    ]

                results.append((resolution, *_timed(composite, plain, rounds)))
        finally:
            db.dispose()
    return CompositeResult(samples, results)


def rows(result: CompositeResult) -> list[Row]:
    out = []
    for resolution, composite, plain in result.resolutions:
        ratio = composite.p50 / plain.p50 if plain.p50 else 0.0
        points = DAYS * 86400 // resolution
        out.append(
            Row(
                f"composite divide of two sums, {DAYS} d x {HOSTS} hosts at {resolution} s "
                f"({points:,} points a series, {result.samples:,} stored): "
                f"p50 (n={len(composite)})",
                f"{composite.p50:.1f} ms",
                f"{plain.p50:.1f} ms plain read",
                f"{ratio:.2f}x",
                "<= 2x plain read",
                "yes" if ratio <= 2 else "NO",
            )
        )
    return out
