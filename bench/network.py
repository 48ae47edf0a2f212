"""Network test figures, printed beside the http-server ones: how many agent-to-server rounds
(a train of 10 TCP handshakes and a path trace each) one worker runs a minute without falling
behind, and how long freezing a 48 h window of a 60 s network test into a snapshot takes.

Both go through a live `snapshotd serve` (one in-process worker) on SQLite, over the v7 API,
against a listener on loopback that accepts every connection.
"""

from __future__ import annotations

import json
import socket
import statistics
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from bench.probes import SNAPSHOT_ROUNDS, one_boundary, time_snapshots
from bench.report import Row
from bench.server import SnapshotdServer

TESTS = 240
_ROUND = {
    "server": "127.0.0.1:80",
    "protocol": "tcp",
    "server_ip": "127.0.0.1",
    "sent": 10,
    "received": 10,
    "loss": 0.0,
    "min_latency": 0.2,
    "avg_latency": 0.3,
    "max_latency": 0.5,
    "jitter": 0.1,
    "path": [{"hop": 1, "ip": "127.0.0.1", "rdns": "localhost", "response_time": 0}],
    "total_time": 15,
}


@dataclass
class NetworkResult:
    rounds: int
    busy_seconds: float
    lost: float
    snapshot_ms: list[float]


@contextmanager
def _listener() -> Iterator[int]:
    """Accepts and closes every connection, as fast as one thread can."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    sock.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                sock.accept()[0].close()
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        sock.close()


def run(quick: bool, say: Callable[[str], None]) -> NetworkResult:
    count = 60 if quick else TESTS
    with _listener() as port, SnapshotdServer(concurrency=2) as server:
        auth = {"Authorization": f"Bearer {server.token}"}
        with httpx.Client(base_url=server.url, headers=auth, timeout=60) as client:
            agent = client.get("/v7/agents").json()["agents"][0]["agentId"]
            say(f"network: {count} agent-to-server tests every 60 s on one worker")
            for index in range(count):
                body = {
                    "testName": f"n{index}",
                    "server": f"127.0.0.1:{port}",
                    "interval": 60,
                    "agents": [{"agentId": agent}],
                }
                client.post("/v7/tests/agent-to-server", json=body).raise_for_status()
            say("network: waiting for the next minute's rounds")
            rounds, busy, results = one_boundary(server, count)
            sent = sum(r.get("sent") or 0 for r in results)
            lost = 100 * (sent - sum(r.get("received") or 0 for r in results)) / sent if sent else 0
            say(f"network: 48 h snapshots of {SNAPSHOT_ROUNDS} rounds")
            target = {"server": f"127.0.0.1:{port}"}
            timings = time_snapshots(
                client, server, "agent-to-server", target, agent, json.dumps(_ROUND)
            )
    return NetworkResult(rounds, busy, lost, timings)


def rows(result: NetworkResult) -> list[Row]:
    per_minute = result.rounds * 60 / result.busy_seconds if result.busy_seconds else 0.0
    snapshot = statistics.median(result.snapshot_ms)
    return [
        Row(
            f"agent-to-server rounds a minute, one worker ({result.rounds} due at one minute, "
            f"10 probes each, {result.lost:.1f}% lost)",
            f"{per_minute:,.0f}/min",
            f"last result {result.busy_seconds:.1f} s",
            f"{result.busy_seconds / 60:.2f}x of 60 s",
            ">= 200/min",
            "yes" if per_minute >= 200 and result.busy_seconds < 60 else "NO",
        ),
        Row(
            f"48 h snapshot of a 60 s network test ({SNAPSHOT_ROUNDS} rounds): p50 of 3",
            f"{snapshot:.0f} ms",
            "-",
            "-",
            "<= 1000 ms",
            "yes" if snapshot <= 1000 else "NO",
        ),
    ]
