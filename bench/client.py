"""Drives a running snapshotd through its native API the way a client would."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from bench.stats import Series

# A status read costs the server ~6 ms of CPU; polling faster would tax the workers.
POLL_SECONDS = 0.1
JOB_TIMEOUT = 180.0


class BenchFailure(RuntimeError):
    pass


class NativeClient:
    def __init__(self, base_url: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(120.0, connect=10.0),
        )
        self.captures = 0
        self.status_reads = 0

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> NativeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, url: str, *, evidence: bool, options: Mapping[str, Any] | None = None) -> str:
        """Queues one snapshot, waiting out 429/503 as a well-behaved client would.

        `options` are further request fields (`full_page`, `block_ads`, ...), sent as they are.
        """
        body = {"url": url, "width": 1280, "height": 800, "evidence": evidence, **(options or {})}
        while True:
            response = self.http.post("/api/v1/snapshots", json=body)
            if response.status_code in (429, 503):
                time.sleep(min(float(response.headers.get("retry-after", "1")), 5.0))
                continue
            if response.status_code != 202:
                detail = f"{response.status_code} {response.text}"
                raise BenchFailure(f"POST /api/v1/snapshots: {detail}")
            return str(response.json()["id"])

    def wait(self, snapshot_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + JOB_TIMEOUT
        while time.monotonic() < deadline:
            response = self.http.get(f"/api/v1/snapshots/{snapshot_id}")
            self.status_reads += 1
            response.raise_for_status()
            body: dict[str, Any] = response.json()
            if body["status"] == "success":
                return body
            if body["status"] == "failed":
                raise BenchFailure(f"snapshot {snapshot_id} failed: {body['status_message']}")
            time.sleep(POLL_SECONDS)
        raise BenchFailure(f"snapshot {snapshot_id} did not finish in {JOB_TIMEOUT:.0f} s")

    def batch(
        self,
        urls: str | Sequence[str],
        count: int,
        *,
        evidence: bool,
        options: Mapping[str, Any] | None = None,
        window: int = 200,
        finished: list[dict[str, Any]] | None = None,
    ) -> Series:
        """Submits `count` snapshots, cycling through `urls`, and waits for all; `wall` covers
        first submit to last done. Each finished snapshot's body is added to `finished` if given.

        Waiting goes oldest first, one request at a time, so polling steals little CPU from the
        workers; jobs finish roughly in order, so the lag this adds is one poll interval at most.
        """
        targets = [urls] if isinstance(urls, str) else list(urls)
        series = Series()
        began = time.perf_counter()
        pending: list[tuple[str, float]] = []
        submitted = 0
        while submitted < count or pending:
            # A window keeps the queue below its 1000-job ceiling on long runs.
            while submitted < count and len(pending) < window:
                url = targets[submitted % len(targets)]
                snapshot_id = self.submit(url, evidence=evidence, options=options)
                pending.append((snapshot_id, time.perf_counter()))
                submitted += 1
            snapshot_id, queued_at = pending.pop(0)
            body = self.wait(snapshot_id)
            if finished is not None:
                finished.append(body)
            series.add(time.perf_counter() - queued_at)
            self.captures += 1
        series.wall = time.perf_counter() - began
        return series

    def capture(self, url: str) -> bytes:
        # force: the route answers a repeat from the capture cache, and a capture is timed here.
        params: dict[str, str | int] = {
            "url": url,
            "width": 1280,
            "height": 800,
            "evidence": "false",
            "force": "true",
        }
        response = self.http.get("/api/v1/capture", params=params)
        if response.status_code != 200:
            raise BenchFailure(f"GET /api/v1/capture: {response.status_code} {response.text}")
        self.captures += 1
        return response.content

    def sync_latency(self, url: str, count: int) -> Series:
        series = Series()
        for _ in range(count):
            began = time.perf_counter()
            data = self.capture(url)
            series.add(time.perf_counter() - began)
            if not data.startswith(b"\x89PNG"):
                raise BenchFailure("GET /api/v1/capture did not answer a PNG")
        return series
