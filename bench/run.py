"""The phases of one bench run against a live `snapshotd serve`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.client import NativeClient
from bench.server import Shutdown, SnapshotdServer
from bench.stats import Series

SETTLE_SECONDS = 1.0


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
    sync: Series | None = None
    memory: list[MemoryPoint] = field(default_factory=list)
    shutdown: Shutdown | None = None


def _measure(server: SnapshotdServer, client: NativeClient, url: str) -> MemoryPoint:
    time.sleep(SETTLE_SECONDS)
    mib, counted = server.pss_mib()
    if not any(p.is_browser for p in counted):
        # A recycle boundary closes the browser and the next capture relaunches it; measure a
        # running one, or the figure would flatter the server.
        client.capture(url)
        time.sleep(SETTLE_SECONDS)
        mib, counted = server.pss_mib()
    browsers = sum(p.is_browser for p in counted)
    return MemoryPoint(client.captures, mib, len(counted), browsers)


def _top_up(client: NativeClient, url: str, target: int) -> None:
    if client.captures < target:
        client.batch(url, target - client.captures, evidence=True)


def serve_run(url: str, concurrency: int, plan: Plan, say: Callable[[str], None]) -> ServeResult:
    result = ServeResult(concurrency)
    tag = f"[snapshotd c={concurrency}]"
    say(f"{tag} starting snapshotd serve")
    with (
        SnapshotdServer(concurrency=concurrency) as server,
        NativeClient(server.url, server.token) as client,
    ):
        if plan.memory:
            result.memory.append(_measure(server, client, url))
            say(f"{tag} idle PSS {result.memory[-1].mib:.0f} MiB")
        # Warm every context slot once (the first shots pay renderer start-up) before timing.
        client.batch(url, concurrency * 2, evidence=False)
        if plan.memory:
            say(f"{tag} {plan.memory_first} captures for the first memory checkpoint")
            _top_up(client, url, plan.memory_first)
            result.memory.append(_measure(server, client, url))
        say(f"{tag} {plan.shots} async snapshots, evidence off")
        result.async_plain = client.batch(url, plan.shots, evidence=False)
        say(f"{tag} {plan.shots} async snapshots, evidence on")
        result.async_evidence = client.batch(url, plan.shots, evidence=True)
        say(f"{tag} {plan.sync_shots} synchronous captures")
        result.sync = client.sync_latency(url, plan.sync_shots)
        if plan.memory:
            say(f"{tag} up to {plan.memory_long} captures for the long memory checkpoint")
            _top_up(client, url, plan.memory_long)
            result.memory.append(_measure(server, client, url))
        say(f"{tag} SIGTERM and shutdown check")
        result.shutdown = server.shutdown()
        if result.shutdown.exit_code is None:
            say(f"{tag} serve did not exit; last log lines:\n{server.log_tail()}")
    return result
