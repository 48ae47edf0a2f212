"""The phases of one bench run against a live `snapshotd serve`."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from bench import proc
from bench.client import BenchFailure, NativeClient
from bench.server import Shutdown, SnapshotdServer
from bench.stats import Series

SETTLE_SECONDS = 1.0
READINGS = 3


@dataclass
class Plan:
    shots: int
    sync_shots: int
    memory: bool
    memory_first: int = 100
    memory_long: int = 1000


@dataclass
class MemoryPoint:
    captures: int
    mib: float
    processes: int
    browsers: int


@dataclass
class ServeResult:
    concurrency: int
    async_plain: Series | None = None
    async_evidence: Series | None = None
    # Its cpu_ms is the serve process's (API, worker, guard, Playwright client) per capture: one
    # request each, so no polling is counted in it.
    sync: Series | None = None
    memory: list[MemoryPoint] = field(default_factory=list)
    shutdown: Shutdown | None = None


def _measure(server: SnapshotdServer, client: NativeClient, url: str) -> MemoryPoint:
    time.sleep(SETTLE_SECONDS)
    counted = server.pss_mib()[1]
    if not any(p.is_browser for p in counted):
        # A recycle boundary closes the browser and the next capture relaunches it; measure a
        # running one, or the figure would flatter the server.
        client.capture(url)
        time.sleep(SETTLE_SECONDS)
    readings = []
    for _ in range(READINGS):
        mib, counted = server.pss_mib()
        readings.append(mib)
        time.sleep(0.3)
    browsers = sum(p.is_browser for p in counted)
    return MemoryPoint(client.captures, statistics.median(readings), len(counted), browsers)


def _top_up(client: NativeClient, url: str, target: int) -> None:
    if client.captures < target:
        client.batch(url, target - client.captures, evidence=True)


def _timed_sync(server: SnapshotdServer, client: NativeClient, url: str, shots: int) -> Series:
    assert server.process is not None
    cpu = proc.cpu_seconds(server.process.pid)
    series = client.sync_latency(url, shots)
    series.cpu_ms = (proc.cpu_seconds(server.process.pid) - cpu) * 1000 / shots
    return series


def _shutdown_in_flight(server: SnapshotdServer, client: NativeClient, url: str) -> Shutdown:
    """SIGTERM while captures are running: the design says in-flight jobs finish first."""
    ids = [client.submit(url, evidence=True) for _ in range(server.concurrency)]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        states = [client.http.get(f"/api/v1/snapshots/{i}").json()["status"] for i in ids]
        if "working" in states:
            break
        time.sleep(0.02)
    result = server.shutdown()
    try:
        result.in_flight = server.statuses(ids)
    except Exception as error:  # a diagnostic only: the schema may change under us
        result.in_flight = {"?": f"unreadable: {error}"}
    return result


def _load() -> str:
    return f"load {proc.load_average():.2f}"


def serve_run(url: str, concurrency: int, plan: Plan, say: Callable[[str], None]) -> ServeResult:
    result = ServeResult(concurrency)
    tag = f"[snapshotd c={concurrency}]"
    say(f"{tag} starting snapshotd serve; {_load()}")
    with (
        SnapshotdServer(concurrency=concurrency) as server,
        NativeClient(server.url, server.token) as client,
    ):
        try:
            _phases(server, client, url, plan, result, lambda text: say(f"{tag} {text}"))
        except (BenchFailure, httpx.HTTPError) as error:
            # The data dir goes with the server, so keep its log's last words here.
            raise BenchFailure(f"{tag} {error}\nserve log:\n{server.log_tail()}") from error
    return result


def _phases(
    server: SnapshotdServer,
    client: NativeClient,
    url: str,
    plan: Plan,
    result: ServeResult,
    say: Callable[[str], None],
) -> None:
    concurrency = server.concurrency
    if plan.memory:
        result.memory.append(_measure(server, client, url))
        say(f"idle PSS {result.memory[-1].mib:.0f} MiB")
    # Warm every context slot once (the first shots pay renderer start-up) before timing.
    client.batch(url, concurrency * 2, evidence=False)
    if plan.memory:
        say(f"captures up to {plan.memory_first} for the first memory reading")
        _top_up(client, url, plan.memory_first)
        result.memory.append(_measure(server, client, url))
    say(f"{plan.shots} async snapshots, evidence off; {_load()}")
    result.async_plain = client.batch(url, plan.shots, evidence=False)
    say(f"{plan.shots} async snapshots, evidence on; {_load()}")
    result.async_evidence = client.batch(url, plan.shots, evidence=True)
    say(f"{plan.sync_shots} synchronous captures; {_load()}")
    result.sync = _timed_sync(server, client, url, plan.sync_shots)
    if plan.memory:
        say(f"captures up to {plan.memory_long} for the long memory reading")
        _top_up(client, url, plan.memory_long)
        result.memory.append(_measure(server, client, url))
    say(f"SIGTERM with {concurrency} captures in flight, then the leftover check")
    result.shutdown = _shutdown_in_flight(server, client, url)
    if result.shutdown.exit_code is None:
        say(f"serve did not exit; last log lines:\n{server.log_tail()}")
