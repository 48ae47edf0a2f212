"""Render links: a cache hit through a signed link, a storm of identical misses, and what a miss
costs over a synchronous capture.

One `snapshotd serve` (one API process and its worker, no access log, as docs/deploy.md runs it)
captures the bench page from a loopback server that counts the requests it gets; first on SQLite,
then on a private PostgreSQL. On each:

- misses: render links that each name the page with a query of their own, so each is a miss,
  one at a time and interleaved one for one with `GET /api/v1/capture?force=true` of the page
  under another query of its own: the same capture through the token route, without the cache;
- a storm: STORM requests of one new link at once; the page server counts the loads of its URL,
  the API lists the snapshots made of it;
- hits: wrk on one link already in the cache, with 1 connection (what a hit costs alone) and
  with CONNECTIONS (the rate one process sustains, and there p50 is mostly queueing);
- captures: wrk on the same link with `force=true`, same connections: the capture rate that
  the hits are set against.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import os
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx

from bench import proc
from bench.client import BenchFailure
from bench.load import WrkRun, db_cpu_seconds, wrk
from bench.pages import PageServer, build_page
from bench.postgres import PrivatePostgres
from bench.report import DASH, Row
from bench.server import SnapshotdServer
from bench.stats import Series

CONNECTIONS = 16
STORM = 20
CONCURRENCY = 2  # the worker's captures at once, as `snapshotd serve` runs by default
WARMUP_SECONDS = 2
CAPTURE_TIMEOUT = 60.0  # seconds wrk waits for a forced capture queued behind the others
VIEW = {"width": "1280", "height": "800", "evidence": "false"}

HIT_P50 = 5.0  # ms, one connection
HIT_RATE = 1000  # a second, one API process
HIT_RATIO = 30  # hits per forced capture
MISS_EXTRA = 10.0  # ms over the synchronous capture's p50


@dataclass
class Storm:
    requests: int
    answered: int  # 200s
    misses: int  # answers with X-Cache: miss; the rest joined the running capture
    snapshot_ids: int  # distinct X-Snapshot-Id among the answers
    page_loads: int  # requests the page server got for the storm's URL
    snapshots: int  # snapshots of that URL the API lists


@dataclass
class Hits:
    alone: WrkRun
    loaded: WrkRun
    cpu_us: float  # every serve process's CPU per hit at CONNECTIONS
    db_cpu_us: float | None  # the PostgreSQL server's


@dataclass
class RenderRun:
    database: str
    image_bytes: int
    misses: Series
    syncs: Series
    storm: Storm
    hits: Hits
    captures: WrkRun


@dataclass
class RenderResult:
    runs: list[RenderRun]
    notes: list[str]


@dataclass(frozen=True)
class Links:
    """Signs render links with one key, as docs/render-links.md tells a user to."""

    key_id: str
    secret: str
    page: str  # the page server's URL
    run: str  # the database: each server's pages have URLs of their own

    def query(self, tag: str) -> dict[str, str]:
        """The capture of the bench page under a query of its own, hence a cache key of its own."""
        return {"url": f"{self.page}?run={self.run}&{tag}", **VIEW}

    def link(self, tag: str, **extra: str) -> str:
        text = urlencode(self.query(tag) | extra)
        mac = hmac.new(self.secret.encode(), text.encode(), hashlib.sha256).hexdigest()
        return f"/render/{self.key_id}/png?{text}&signature={mac}"

    def sync(self, tag: str) -> str:
        return "/api/v1/capture?" + urlencode(self.query(tag) | {"force": "true"})


def _get(
    http: httpx.Client, path: str, cache: str, token: str = ""
) -> tuple[float, httpx.Response]:
    """Seconds a GET took and its answer, which must be a 200 with `X-Cache: cache`; render
    links go without a token, as from a browser."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    began = time.perf_counter()
    answer = http.get(path, headers=headers)
    took = time.perf_counter() - began
    header = answer.headers.get("x-cache")
    if answer.status_code != 200 or header != cache:
        detail = answer.text[:500] if answer.status_code != 200 else ""
        raise BenchFailure(f"GET {path}: {answer.status_code}, X-Cache {header}, {detail}")
    return took, answer


def _new_key(http: httpx.Client, token: str) -> dict[str, str]:
    # No request budget: the rate is what is measured here.
    created = http.post(
        "/api/v1/render-keys",
        json={"name": "bench", "rate_limit": "0"},
        headers={"Authorization": f"Bearer {token}"},
    )
    if created.status_code != 201:
        raise BenchFailure(f"POST /api/v1/render-keys: {created.status_code} {created.text}")
    body: dict[str, str] = created.json()
    return body


def _interleaved(
    http: httpx.Client, token: str, links: Links, pairs: int, say: Callable[[str], None]
) -> tuple[Series, Series]:
    """Render-link misses and forced synchronous captures, one of each in turn."""
    for warm in range(2):  # the browser starts, and each route runs once, before timing
        _get(http, links.link(f"warm={warm}"), "miss")
        _get(http, links.sync(f"warm-sync={warm}"), "miss", token)
    say(f"{pairs} render-link misses interleaved with {pairs} forced GET /api/v1/capture")
    misses, syncs = Series(), Series()
    for index in range(pairs):
        misses.add(_get(http, links.link(f"miss={index}"), "miss")[0])
        syncs.add(_get(http, links.sync(f"sync={index}"), "miss", token)[0])
    return misses, syncs


def _storm(http: httpx.Client, token: str, links: Links, pages: PageServer) -> Storm:
    tag = "storm=1"
    path = links.link(tag)
    since = int(time.time()) - 1

    async def fire() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=STORM)
        async with httpx.AsyncClient(base_url=http.base_url, timeout=120, limits=limits) as burst:
            return await asyncio.gather(*(burst.get(path) for _ in range(STORM)))

    answers = asyncio.run(fire())
    url = links.query(tag)["url"]
    loads = pages.hits[url.removeprefix(pages.url.rstrip("/"))]
    listed = http.get(
        "/api/v1/snapshots",
        params={"created_after": since, "limit": 200},
        headers={"Authorization": f"Bearer {token}"},
    )
    return Storm(
        requests=STORM,
        answered=sum(answer.status_code == 200 for answer in answers),
        misses=sum(answer.headers.get("x-cache") == "miss" for answer in answers),
        snapshot_ids=len({answer.headers.get("x-snapshot-id") for answer in answers}),
        page_loads=loads,
        snapshots=sum(item["url"] == url for item in listed.raise_for_status().json()["items"]),
    )


def _wrk_cpu() -> int:
    """The CPU wrk is pinned to, the last one, as in the load section."""
    return sorted(os.sched_getaffinity(0))[-1]


def _hits(
    server: SnapshotdServer, postgres: PrivatePostgres | None, link: str, seconds: float
) -> Hits:
    """wrk on a cached link: with one connection, then with CONNECTIONS, counting CPU."""
    hammer = functools.partial(wrk, server.url + link, cpu=_wrk_cpu())
    hammer(connections=CONNECTIONS, seconds=WARMUP_SECONDS)
    alone = hammer(connections=1, seconds=seconds)
    api_cpu, db_cpu = server.cpu_seconds(), db_cpu_seconds(postgres)
    loaded = hammer(connections=CONNECTIONS, seconds=seconds)
    per_hit = 1e6 / max(1, loaded.requests)
    cpu_us = (server.cpu_seconds() - api_cpu) * per_hit
    db_cpu_us = (db_cpu_seconds(postgres) - db_cpu) * per_hit if postgres else None
    return Hits(alone, loaded, cpu_us, db_cpu_us)


def _measure(
    server: SnapshotdServer,
    database: str,
    pages: PageServer,
    postgres: PrivatePostgres | None,
    seconds: float,
    pairs: int,
    say: Callable[[str], None],
) -> RenderRun:
    token = server.token
    with httpx.Client(base_url=server.url, timeout=120) as http:
        key = _new_key(http, token)
        links = Links(key["id"], key["secret"], pages.url, database)
        misses, syncs = _interleaved(http, token, links, pairs, say)
        say(f"{STORM} identical misses at once")
        storm = _storm(http, token, links, pages)
        image = _get(http, links.link("hit=1"), "miss")[1].content
    say(f"cache hits under wrk, 1 and {CONNECTIONS} connections; load {proc.load_average():.2f}")
    hits = _hits(server, postgres, links.link("hit=1"), seconds)
    say(f"{database}: {hits.loaded.rate:,.0f} hits/s, p50 alone {hits.alone.p50_ms:.1f} ms")
    say(f"forced captures of the same link under wrk, {CONNECTIONS} connections")
    captures = wrk(
        server.url + links.link("hit=1", force="true"),
        connections=CONNECTIONS,
        seconds=seconds,
        cpu=_wrk_cpu(),
        timeout=CAPTURE_TIMEOUT,
    )
    say(f"{database}: {captures.rate:.1f} captures/s")
    return RenderRun(
        database=database,
        image_bytes=len(image),
        misses=misses,
        syncs=syncs,
        storm=storm,
        hits=hits,
        captures=captures,
    )


def run(quick: bool, say: Callable[[str], None]) -> RenderResult:
    if shutil.which("wrk") is None:
        raise BenchFailure("wrk not found: install Debian's wrk (scripts/system-deps.sh does)")
    seconds = 5.0 if quick else 15.0
    pairs = 20 if quick else 50
    runs: list[RenderRun] = []
    # As in the load section: commits wait for no disk flush on either database.
    settings = {"max_connections": "200", "synchronous_commit": "off"}
    with PageServer(build_page()) as pages, PrivatePostgres(settings) as postgres:
        for database in ("sqlite", "postgresql"):
            pg = postgres if database == "postgresql" else None
            env = {"SNAPSHOTD_ACCESS_LOG": "false"}
            if pg is not None:
                env["SNAPSHOTD_DATABASE_URL"] = pg.create_database("bench_render")
            say(f"render {database}: snapshotd serve; load {proc.load_average():.2f}")
            with SnapshotdServer(concurrency=CONCURRENCY, env=env) as server:
                try:
                    runs.append(_measure(server, database, pages, pg, seconds, pairs, say))
                except (BenchFailure, httpx.HTTPError) as error:
                    log = server.log_tail()
                    raise BenchFailure(f"render {database}: {error}\nserve log:\n{log}") from error
    return RenderResult(runs, _notes(seconds, pairs))


def _notes(seconds: float, pairs: int) -> list[str]:
    return [
        f"render: one snapshotd serve (1 API process, worker concurrency {CONCURRENCY}, no "
        "access log) per database; the bench page at 1280x800, PNG, evidence off",
        f"render: misses and forced captures {pairs} each, one at a time, interleaved; "
        f"wrk {WARMUP_SECONDS:g} s warm-up then {seconds:g} s per run, pinned to CPU "
        f"{_wrk_cpu()}; the server unpinned, since Chromium runs under it",
    ]


def _met(ok: bool) -> str:
    return "yes" if ok else "NO"


def _errors(run: WrkRun) -> str:
    return f", ERRORS: {run.error_kinds}" if run.errors else ""


def _hit_rows(run: RenderRun) -> list[Row]:
    alone, hits, captures = run.hits.alone, run.hits.loaded, run.captures
    ratio = hits.rate / captures.rate if captures.rate else 0.0
    cpu = f"{run.hits.cpu_us:,.0f} us"
    if run.hits.db_cpu_us is not None:
        cpu += f" + {run.hits.db_cpu_us:,.0f} us PostgreSQL"
    return [
        Row(
            f"render {run.database}: cache hit alone, p50 / p99 (c=1{_errors(alone)})",
            f"{alone.p50_ms:.1f} / {alone.p99_ms:.1f} ms",
            target=f"p50 <= {HIT_P50:g} ms",
            met=_met(alone.p50_ms <= HIT_P50 and not alone.errors),
        ),
        Row(
            f"render {run.database}: cache hits/s (c={CONNECTIONS}{_errors(hits)})",
            f"{hits.rate:,.0f}",
            target=f">= {HIT_RATE:,}/s",
            met=_met(hits.rate >= HIT_RATE and not hits.errors),
        ),
        Row(
            "  against forced captures/s, same link and connections",
            f"{hits.rate:,.0f}",
            f"{captures.rate:.1f}{_errors(captures)}",
            f"{ratio:,.0f}x",
            f">= {HIT_RATIO}x",
            _met(ratio >= HIT_RATIO and not hits.errors),
        ),
        Row("  hits p50 / p99", f"{hits.p50_ms:.1f} / {hits.p99_ms:.1f} ms"),
        Row("  forced captures p50 / p99", f"{captures.p50_ms:.0f} / {captures.p99_ms:.0f} ms"),
        Row("  CPU per hit", cpu),
    ]


def _storm_rows(run: RenderRun) -> list[Row]:
    storm = run.storm
    joined = storm.answered - storm.misses
    return [
        Row(
            f"render {run.database}: {storm.requests} identical misses at once: page loads",
            str(storm.page_loads),
            target="1",
            met=_met(storm.page_loads == 1),
        ),
        Row(
            "  snapshots created (listed / answered)",
            f"{storm.snapshots} / {storm.snapshot_ids}",
            target="1",
            met=_met(storm.snapshots == storm.snapshot_ids == 1),
        ),
        Row(
            "  answers",
            f"{storm.answered} x 200: {storm.misses} miss, {joined} joined",
            target=f"{storm.requests} x 200",
            met=_met(storm.answered == storm.requests),
        ),
    ]


def _miss_rows(run: RenderRun) -> list[Row]:
    misses, syncs = run.misses, run.syncs
    extra = misses.p50 - syncs.p50
    paired = [
        (miss - sync) * 1000 for miss, sync in zip(misses.samples, syncs.samples, strict=True)
    ]
    return [
        Row(
            f"render {run.database}: miss p50 (n={len(misses)})",
            f"{misses.p50:.0f} ms",
            f"{syncs.p50:.0f} ms (sync)",
            f"{extra:+.1f} ms",
            f"<= +{MISS_EXTRA:g} ms",
            _met(extra <= MISS_EXTRA),
        ),
        Row("  miss p99", f"{misses.p99:.0f} ms", f"{syncs.p99:.0f} ms (sync)"),
        # Each miss against the capture right after it: the machine's drift mostly cancels out.
        Row("  miss minus sync, median of the pairs", f"{statistics.median(paired):+.1f} ms"),
    ]


def describe(result: RenderResult) -> str:
    sizes = ", ".join(f"{run.database} {run.image_bytes:,} bytes" for run in result.runs)
    return f"render: the cached picture is a 1280x800 PNG ({sizes or DASH})"


def rows(result: RenderResult) -> list[Row]:
    found: list[Row] = []
    for run in result.runs:
        found += _hit_rows(run) + _storm_rows(run) + _miss_rows(run)
    return found
