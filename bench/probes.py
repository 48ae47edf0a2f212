"""Synthetic test figures: how many http-server rounds one worker runs a minute without falling
behind, and how long freezing a 48 h window of a 60 s test (2,880 rounds) into a snapshot takes.

Both go through a live `snapshotd serve` (one in-process worker) on SQLite, over the v7 API.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import time
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx

from bench.pages import PageServer, build_page
from bench.report import Row
from bench.server import SnapshotdServer

TESTS = 240
SNAPSHOT_ROUNDS = 2880
_HTTP_ROUND = json.dumps({"response_code": 200, "total_time": 12, "response_time": 5})


@dataclass
class ProbeResult:
    rounds: int
    busy_seconds: float
    worst_lag: float
    snapshot_ms: list[float]


def _create_tests(client: httpx.Client, url: str, agent: str, count: int) -> list[str]:
    ids = []
    for index in range(count):
        body = {"testName": f"t{index}", "url": url, "interval": 60, "agents": [{"agentId": agent}]}
        answer = client.post("/v7/tests/http-server", json=body)
        answer.raise_for_status()
        ids.append(answer.json()["testId"])
    return ids


def _rounds_of(db: sqlite3.Connection, round_id: int) -> list[dict]:
    rows = db.execute(
        "SELECT result FROM test_rounds WHERE round_id = ? AND state = 'done'", (round_id,)
    ).fetchall()
    return [json.loads(text) for (text,) in rows]


def one_boundary(server: SnapshotdServer, count: int) -> tuple[int, float, list[dict]]:
    """Waits for the next minute's round of every test; returns how many ran, how long the
    worker was busy with them (the last result's end, from the round's start), and the
    results."""
    assert server.root is not None
    path = server.root / "data" / "snapshotd.db"
    boundary = (int(time.time()) // 60 + 1) * 60
    time.sleep(max(0.0, boundary - time.time()))
    deadline = boundary + 60
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        while time.time() < deadline:
            results = _rounds_of(db, boundary)
            if len(results) >= count:
                break
            time.sleep(0.25)
        results = _rounds_of(db, boundary)
    ends = [
        datetime.fromisoformat(r["date"]).timestamp() + (r.get("total_time") or 0) / 1000
        for r in results
        if r.get("date")
    ]
    busy = (max(ends) - boundary) if ends else 60.0
    return len(results), busy, results


def seed_rounds(
    server: SnapshotdServer, test_id: str, agent: str, end: int, result: str = _HTTP_ROUND
) -> None:
    """2,880 finished rounds of a 60 s test, written straight into the database file."""
    assert server.root is not None
    path = server.root / "data" / "snapshotd.db"
    first = end - end % 60 - (SNAPSHOT_ROUNDS - 1) * 60
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
    rows = [
        (int(test_id), first + i * 60, int(agent), "done", result, now)
        for i in range(SNAPSHOT_ROUNDS)
    ]
    with closing(sqlite3.connect(path, timeout=30)) as db:
        db.executemany(
            "INSERT OR IGNORE INTO test_rounds (test_id, round_id, agent_id, state, result, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
        db.commit()


def run(quick: bool, say: Callable[[str], None]) -> ProbeResult:
    count = 60 if quick else TESTS
    with PageServer(build_page()) as target, SnapshotdServer(concurrency=2) as server:
        auth = {"Authorization": f"Bearer {server.token}"}
        with httpx.Client(base_url=server.url, headers=auth, timeout=60) as client:
            agent = client.get("/v7/agents").json()["agents"][0]["agentId"]
            say(f"tests: {count} http-server tests every 60 s on one worker")
            _create_tests(client, target.url, agent, count)
            say("tests: waiting for the next minute's rounds")
            rounds, busy, _ = one_boundary(server, count)
            lag = busy
            say(f"tests: 48 h snapshots of {SNAPSHOT_ROUNDS} rounds")
            timings = time_snapshots(
                client, server, "http-server", {"url": target.url}, agent, _HTTP_ROUND
            )
    return ProbeResult(rounds, busy, lag, timings)


def time_snapshots(
    client: httpx.Client,
    server: SnapshotdServer,
    kind: str,
    target: Mapping[str, object],
    agent: str,
    result: str,
) -> list[float]:
    """Milliseconds of three 48 h snapshots of a `kind` test on `target` whose 2,880 rounds each
    recorded `result`. The test is disabled, so the scheduler adds nothing to its window."""
    body = {
        "testName": "history",
        **target,
        "interval": 60,
        "enabled": False,
        "agents": [{"agentId": agent}],
    }
    source = client.post(f"/v7/tests/{kind}", json=body)
    source.raise_for_status()
    test_id = source.json()["testId"]
    end = datetime.now(UTC)
    seed_rounds(server, test_id, agent, int(end.timestamp()), result)
    timings = []
    for attempt in range(3):
        request = {
            "displayName": f"two days {attempt}",
            "startDate": (end - timedelta(hours=48)).isoformat(),
            "endDate": end.isoformat(),
            "isPublic": True,
        }
        began = time.perf_counter()
        answer = client.post(f"/v7/tests/{test_id}/snapshot", json=request)
        timings.append((time.perf_counter() - began) * 1000)
        answer.raise_for_status()
    return timings


def rows(result: ProbeResult) -> list[Row]:
    per_minute = result.rounds * 60 / result.busy_seconds if result.busy_seconds else 0.0
    snapshot = statistics.median(result.snapshot_ms)
    return [
        Row(
            f"http-server rounds a minute, one worker ({result.rounds} due at one minute)",
            f"{per_minute:,.0f}/min",
            f"last result {result.worst_lag:.1f} s",
            f"{result.worst_lag / 60:.2f}x of 60 s",
            ">= 200/min",
            "yes" if per_minute >= 200 and result.worst_lag < 60 else "NO",
        ),
        Row(
            f"48 h snapshot of a 60 s test ({SNAPSHOT_ROUNDS} rounds): p50 of 3",
            f"{snapshot:.0f} ms",
            "-",
            "-",
            "<= 1000 ms",
            "yes" if snapshot <= 1000 else "NO",
        ),
    ]
