"""Chart and metric figures: render rate, snapshot latency, ingest rate and roll-up read cost.

The render baseline is the obvious matplotlib program (a new figure per chart, `savefig` to PNG)
drawing the same data, measured in the same run. Ingest and snapshots go through a live
`snapshotd serve` on SQLite, over HTTP, as the official client would send them.
"""

from __future__ import annotations

import concurrent.futures
import io
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench.report import Row
from bench.server import SnapshotdServer
from bench.stats import Series
from snapshotd.config import Settings
from snapshotd.engines.charts import ChartRenderer, ChartSpec
from snapshotd.engines.charts import Series as Line
from snapshotd.services.chart_snapshots import ChartSnapshots
from snapshotd.services.graph import make_queue
from snapshotd.services.metrics import Metrics
from snapshotd.services.snapshots import Snapshots
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from snapshotd.store.models import Snapshot

POINTS = 3600
STREAMS = 3
BATCH = 1000
EMAIL = "b@bench.test"
HOURS = 6


def _lines(end: float) -> list[Line]:
    times = np.arange(end - POINTS + 1, end + 1, 1.0)
    rng = np.random.default_rng(7)
    return [
        Line(f"host-{i}", times, np.cumsum(rng.normal(0, 1, POINTS)) + 40 * i)
        for i in range(STREAMS)
    ]


def _naive_render(lines: list[Line]) -> bytes:
    figure = Figure(figsize=(8, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for line in lines:
        axes.plot(line.times, line.values, label=line.label)
    axes.legend()
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


def _rate(render: Callable[[], bytes], seconds: float) -> Series:
    render()  # warm: fonts, caches, the kept frame
    series = Series()
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        start = time.perf_counter()
        render()
        series.add(time.perf_counter() - start)
    return series


@dataclass
class ChartResult:
    naive: Series
    engine: Series
    ingest_rate: float
    ingest_requests: int
    read_raw_ms: float
    read_rollup_ms: float
    snapshot_stored: Series
    snapshot_polled: Series
    bare_job: Series


def _post_batches(client: httpx.Client, batches: list[dict]) -> None:
    for body in batches:
        response = client.post("/v1/measurements", json=body)
        response.raise_for_status()


def _ingest(server: SnapshotdServer, lines: list[Line], clients: int) -> tuple[float, int]:
    """The rendered lines (three series, an hour at one-second resolution) and earlier hours of the
    same values, in batches of 1,000 posted by `clients` concurrent connections."""
    batches = []
    for hour in range(HOURS):
        for line in lines:
            times = (line.times - hour * POINTS).astype(int).tolist()
            values = line.values.tolist()
            for offset in range(0, POINTS, BATCH):
                batches.append(
                    {
                        "tags": {"host": line.label},
                        "measurements": [
                            {"name": "cpu", "value": values[i], "time": times[i]}
                            for i in range(offset, min(POINTS, offset + BATCH))
                        ],
                    }
                )
    shares = [batches[i::clients] for i in range(clients)]
    auth = (EMAIL, server.token)
    sessions = [httpx.Client(base_url=server.url, auth=auth, timeout=60) for _ in shares]
    try:
        began = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            list(pool.map(_post_batches, sessions, shares))
        elapsed = time.perf_counter() - began
    finally:
        for session in sessions:
            session.close()
    count = sum(len(b["measurements"]) for b in batches)
    return count / elapsed, len(batches)


def _read_ms(client: httpx.Client, end: int, hours: int, resolution: int) -> float:
    params = {"start_time": end - hours * POINTS, "end_time": end, "resolution": resolution}
    timings = []
    for _ in range(7):
        began = time.perf_counter()
        client.get("/v1/measurements/cpu", params=params).raise_for_status()
        timings.append(time.perf_counter() - began)
    return sorted(timings)[len(timings) // 2] * 1000


def _snapshot_latency(
    server: SnapshotdServer, client: httpx.Client, shots: int
) -> tuple[Series, Series, str]:
    """Per snapshot: from sending the request to the image being stored (the server's completion
    time, same clock), and to the client seeing it complete by polling its job every 20 ms."""
    space = client.post("/v1/spaces", json={"name": "bench"}).json()["id"]
    stream = {"metric": "cpu", "tags": [{"name": "host", "values": ["*"]}]}
    chart = client.post(
        f"/v1/spaces/{space}/charts",
        json={"name": "cpu", "type": "line", "streams": [{**stream, "group_function": "breakout"}]},
    ).json()["id"]
    polled, sent = Series(), {}
    for _ in range(shots):
        began, wall = time.perf_counter(), time.time()
        created = client.post("/v1/snapshots", json={"subject": {"chart": {"id": chart}}})
        created.raise_for_status()
        sent[created.json()["id"]] = wall
        job = created.json()["job_href"]
        while (state := client.get(job).json()["state"]) not in ("complete", "failed"):
            time.sleep(0.02)  # polling harder would take CPU from the job it waits for
        if state != "complete":
            raise RuntimeError(f"chart snapshot job failed: {client.get(job).json()}")
        polled.add(time.perf_counter() - began)
    done = server.completed_at(list(sent))
    stored = Series([done[key] - wall for key, wall in sent.items()])
    return stored, polled, next(iter(sent))


def _bare_job(server: SnapshotdServer, snapshot_id: str, seconds: float) -> Series:
    """What the job itself must do, in this process against the server's own database file:
    read the chart's series (`ChartSnapshots.spec`) and render them."""
    assert server.root is not None
    settings = Settings(data_dir=server.root / "data")
    db = Database.from_url(settings.resolved_database_url)
    try:
        snapshots = Snapshots(
            settings, db, make_queue(settings, db), FileBlobStore(settings.blobs_dir)
        )
        charts = ChartSnapshots(settings, snapshots, Metrics(db))
        with db.session() as session:
            snapshot = session.get(Snapshot, snapshot_id)
        assert snapshot is not None
        renderer = ChartRenderer()
        return _rate(lambda: renderer.render(charts.spec(snapshot)[0]), seconds)
    finally:
        db.dispose()


def run(quick: bool, say: Callable[[str], None]) -> ChartResult:
    end = int(time.time())
    lines = _lines(float(end))
    spec = ChartSpec("line", "cpu", float(end - POINTS), float(end), lines)
    renderer = ChartRenderer()
    seconds = 3.0 if quick else 10.0
    say(f"charts: naive matplotlib render, {seconds:.0f} s")
    naive = _rate(lambda: _naive_render(lines), seconds)
    say(f"charts: snapshotd chart engine, {seconds:.0f} s")
    engine = _rate(lambda: renderer.render(spec), seconds)
    with SnapshotdServer(concurrency=1) as server:
        say("charts: ingest through POST /v1/measurements (SQLite), 2 clients")
        ingest_rate, requests = _ingest(server, lines, clients=2)
        auth = (EMAIL, server.token)
        with httpx.Client(base_url=server.url, auth=auth, timeout=60) as client:
            raw = _read_ms(client, end, 1, 1)
            rollup = _read_ms(client, end, HOURS, 60)
            shots = 10 if quick else 30
            say(f"charts: {shots} chart snapshots, request to image ready")
            stored, polled, one = _snapshot_latency(server, client, shots)
        say(f"charts: the bare chart job (read series + render) in-process, {seconds:.0f} s")
        bare = _bare_job(server, one, seconds)
    return ChartResult(naive, engine, ingest_rate, requests, raw, rollup, stored, polled, bare)


def rows(result: ChartResult) -> list[Row]:
    bare = result.bare_job
    engine, naive = result.engine, result.naive
    stored, polled = result.snapshot_stored, result.snapshot_polled
    # The "bare render" a snapshot is compared with: reading its series plus drawing them.
    render_ms = result.bare_job.p50
    ready_ratio = stored.p50 / render_ms if render_ms else 0.0
    per_batch = f"{result.ingest_requests} POSTs of {BATCH}"
    return [
        Row(
            f"chart render 800x400, {STREAMS}x{POINTS} points: renders/s (n={len(engine)})",
            f"{engine.rate:.1f}",
            f"{naive.rate:.1f} naive",
            f"{engine.rate / naive.rate:.2f}x" if naive.rate else "-",
            ">= 20/s a core",
            "yes" if engine.rate >= 20 else "NO",
        ),
        Row(
            f"bare chart job in-process, read 1 h x {STREAMS} series + render: p50 (n={len(bare)})",
            f"{bare.p50:.0f} ms",
            f"{engine.p50:.0f} ms draw",
        ),
        Row(
            f"chart snapshot request sent -> image stored: p50 (n={len(stored)})",
            f"{stored.p50:.0f} ms",
            f"{render_ms:.0f} ms bare",
            f"{ready_ratio:.2f}x",
            "<= 2x bare render",
            "yes" if ready_ratio <= 2 else "NO",
        ),
        Row(
            "  same, as a client polling its job every 20 ms sees it: p50",
            f"{polled.p50:.0f} ms",
            f"{render_ms:.0f} ms bare",
            f"{polled.p50 / render_ms:.2f}x" if render_ms else "-",
        ),
        Row(
            f"ingest POST /v1/measurements, SQLite: measurements/s ({per_batch})",
            f"{result.ingest_rate:,.0f}",
            target=">= 20,000/s",
            met="yes" if result.ingest_rate >= 20_000 else "NO",
        ),
        Row(
            f"read {HOURS} h x {STREAMS} series rolled up to 60 s on read, vs 1 h raw (1 s)",
            f"{result.read_rollup_ms:.1f} ms",
            f"{result.read_raw_ms:.1f} ms raw",
            f"{result.read_rollup_ms / result.read_raw_ms:.2f}x" if result.read_raw_ms else "-",
        ),
    ]
