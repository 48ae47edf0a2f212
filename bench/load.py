"""API load figures: requests/s, p50 and p99 of two native routes, driven by wrk over loopback.

`snapshotd serve --workers 0` runs with 1 and then 2 API processes, on SQLite and on a private
PostgreSQL started here from the machine's own binaries. No worker runs, so nothing is captured:
the figures are the API's alone. The routes are GET /api/v1/snapshots/{id} (an uploaded snapshot,
status success, two artifacts) and POST /api/v1/snapshots (202, queued; creation limits are off
and the queue is allowed to grow, as measuring them is not the point here). The API runs as
docs/deploy.md sets it up, without an access log (the load balancer keeps one); one more run of
the read on SQLite with the access log on shows what it costs.

wrk is closed-loop: CONNECTIONS per API process each send their next request when the previous
answer arrives, so latency is measured at the highest rate the server sustains. wrk is pinned to
the last CPU; the API processes get the others when there are enough of them, else share all.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from PIL import Image

from bench import proc
from bench.client import BenchFailure
from bench.postgres import PrivatePostgres
from bench.server import BIN, SnapshotdServer, free_port

CONNECTIONS = 16  # per API process
WARMUP_SECONDS = 2
AUTH = 'wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")\n'
CREATE = (
    'wrk.method = "POST"\n'
    'wrk.headers["Content-Type"] = "application/json"\n'
    'wrk.body = \'{"url": "https://example.org/", "evidence": false}\'\n'
)


@dataclass(frozen=True)
class Route:
    label: str
    path: str  # "{id}" is the seeded snapshot
    lua: str
    is_read: bool


ROUTES = (
    Route("GET /api/v1/snapshots/{id}", "/api/v1/snapshots/{id}", AUTH, True),
    Route("POST /api/v1/snapshots", "/api/v1/snapshots", AUTH + CREATE, False),
)


@dataclass
class WrkRun:
    requests: int
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int  # answers other than 2xx/3xx, plus connect/read/write errors and timeouts
    error_kinds: str = ""  # e.g. "non-2xx 3, timeout 1"


@dataclass
class LoadRun:
    database: str
    processes: int
    route: Route
    connections: int
    wrk: WrkRun
    api_cpu_us: float  # CPU of every serve process per request
    db_cpu_us: float | None  # CPU of the PostgreSQL server per request
    access_log: bool = False


@dataclass
class LoadResult:
    runs: list[LoadRun]
    notes: list[str]
    cpus: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(value: str) -> float:
    match = re.fullmatch(r"([0-9.]+)([a-z]+)", value)
    if match is None or match[2] not in _UNITS:
        raise BenchFailure(f"unreadable wrk latency {value!r}")
    return float(match[1]) * _UNITS[match[2]]


def parse_wrk(text: str) -> WrkRun:
    """The figures of `wrk --latency` output."""

    def find(pattern: str) -> re.Match[str]:
        match = re.search(pattern, text, re.MULTILINE)
        if match is None:
            raise BenchFailure(f"wrk output without {pattern!r}:\n{text}")
        return match

    kinds: dict[str, int] = {}
    if socket_errors := re.search(r"Socket errors: (.*)", text):
        kinds = {kind: int(n) for kind, n in re.findall(r"(\w+) (\d+)", socket_errors[1])}
    if bad := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        kinds["non-2xx"] = int(bad[1])
    kinds = {kind: n for kind, n in kinds.items() if n}
    return WrkRun(
        requests=int(find(r"(\d+) requests in")[1]),
        rate=float(find(r"Requests/sec:\s+([0-9.]+)")[1]),
        p50_ms=_ms(find(r"^\s+50%\s+(\S+)")[1]),
        p99_ms=_ms(find(r"^\s+99%\s+(\S+)")[1]),
        errors=sum(kinds.values()),
        error_kinds=", ".join(f"{kind} {n}" for kind, n in kinds.items()),
    )


class ApiServer(SnapshotdServer):
    """`snapshotd serve --workers 0 --processes N`, pinned to `cpus` when given."""

    def __init__(
        self,
        *,
        processes: int,
        database_url: str,
        cpus: list[int] | None,
        access_log: bool = False,
    ) -> None:
        super().__init__(concurrency=1)
        self.processes = processes
        self.database_url = database_url
        self.cpus = cpus
        self.access_log = access_log

    def __enter__(self) -> ApiServer:
        super().__enter__()
        return self

    def _env(self) -> dict[str, str]:
        env = {
            **super()._env(),
            "SNAPSHOTD_WORKERS": "0",
            "SNAPSHOTD_QUEUE_MAX_LENGTH": "1000000000",
            "SNAPSHOTD_ACCESS_LOG": str(self.access_log).lower(),
        }
        if self.database_url:
            env["SNAPSHOTD_DATABASE_URL"] = self.database_url
        return env

    def _start(self) -> None:
        env = self._env()
        try:
            self.token = self._create_token(env)
        except RuntimeError as error:
            raise BenchFailure(str(error)) from None
        self.port = free_port()
        pin = ["taskset", "-c", ",".join(map(str, self.cpus))] if self.cpus else []
        command = [str(BIN / "snapshotd"), "serve", "--port", str(self.port)]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [*pin, *command, "--processes", str(self.processes)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready()


def _seed(server: ApiServer) -> str:
    """An uploaded snapshot (status success, image and manifest artifacts) to read back."""
    headers = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        location = client.post(
            "/v1.1/locations",
            json={"name": "Bench", "key": "bench", "capture_url": "https://example.org/"}
            | {"platform": "ios", "frequency": "never"},
        ).raise_for_status()
        where = f"/v1.1/locations/{location.json()['id']}"
        client.post(where + "/publish").raise_for_status()
        image = io.BytesIO()
        Image.new("RGB", (8, 8), "teal").save(image, "PNG")
        uploaded = client.post(where + "/snapshots/upload", files={"file": image.getvalue()})
        snapshot_id = str(uploaded.raise_for_status().json()["data"]["id"])
        if client.get(f"/api/v1/snapshots/{snapshot_id}").json()["status"] != "success":
            raise BenchFailure("the seeded snapshot is not a success")
    return snapshot_id


def db_cpu_seconds(postgres: PrivatePostgres | None) -> float:
    """The PostgreSQL server's CPU, including backends that already exited: a client pool's
    overflow connections come and go during a run, each with a backend of its own."""
    if postgres is None:
        return 0.0
    postmaster = postgres.postmaster()
    stat = Path(f"/proc/{postmaster}/stat").read_text()
    reaped = stat[stat.rindex(")") + 2 :].split()[13:15]  # cutime, cstime
    live = sum(proc.cpu_seconds(p.pid) for p in proc.descendants(postmaster, include_root=True))
    return live + sum(int(ticks) for ticks in reaped) / os.sysconf("SC_CLK_TCK")


def wrk(
    url: str,
    *,
    connections: int,
    seconds: float,
    cpu: int,
    lua: Path | None = None,
    token: str = "",
    timeout: float = 2.0,
) -> WrkRun:
    """One wrk run pinned to `cpu`; `timeout` is how long wrk waits for one answer."""
    command = ["taskset", "-c", str(cpu), "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s"]
    command += ["--latency", f"--timeout={timeout:g}s"]
    if lua is not None:
        command += ["-s", str(lua)]
    done = subprocess.run(
        [*command, url],
        env={**os.environ, "BENCH_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=seconds + timeout + 60,
    )
    if done.returncode != 0:
        raise BenchFailure(f"wrk failed: {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


def _measure(
    server: ApiServer,
    database: str,
    postgres: PrivatePostgres | None,
    seconds: float,
    cpu: int,
    say: Callable[[str], None],
    routes: tuple[Route, ...] = ROUTES,
) -> list[LoadRun]:
    try:
        snapshot_id = _seed(server)
    except httpx.HTTPError as error:
        raise BenchFailure(f"seeding failed: {error}\nserve log:\n{server.log_tail()}") from error
    connections = CONNECTIONS * server.processes
    runs = []
    with tempfile.TemporaryDirectory(prefix="snapshotd-bench-wrk-") as scratch:
        for route in routes:
            lua = Path(scratch) / "route.lua"
            lua.write_text(route.lua)
            url = server.url + route.path.replace("{id}", snapshot_id)
            hammer = functools.partial(
                wrk, url, connections=connections, cpu=cpu, lua=lua, token=server.token
            )
            hammer(seconds=WARMUP_SECONDS)
            api_cpu, db_cpu = server.cpu_seconds(), db_cpu_seconds(postgres)
            measured = hammer(seconds=seconds)
            per_request = 1e6 / max(1, measured.requests)
            api_us = (server.cpu_seconds() - api_cpu) * per_request
            db_us = (db_cpu_seconds(postgres) - db_cpu) * per_request if postgres else None
            runs.append(
                LoadRun(
                    database,
                    server.processes,
                    route,
                    connections,
                    measured,
                    api_us,
                    db_us,
                    access_log=server.access_log,
                )
            )
            say(
                f"{database} x{server.processes} {route.label}: {measured.rate:,.0f}/s, "
                f"p99 {measured.p99_ms:.1f} ms, {measured.errors} errors"
            )
    return runs


def _placement(processes: int) -> tuple[list[int] | None, int]:
    """CPUs for the API processes (None: all) and the one CPU wrk is pinned to."""
    cpus = sorted(os.sched_getaffinity(0))
    rest = cpus[:-1]
    return (rest if len(rest) >= processes else None), cpus[-1]


def run(quick: bool, say: Callable[[str], None], seconds: float | None = None) -> LoadResult:
    if shutil.which("wrk") is None:
        raise BenchFailure("wrk not found: install Debian's wrk (scripts/system-deps.sh does)")
    seconds = seconds or (5.0 if quick else 15.0)
    runs: list[LoadRun] = []
    # Commits wait for no disk flush, as SQLite's WAL with synchronous=NORMAL does: the figures
    # compare the two databases' query paths, not this machine's disk.
    settings = {"max_connections": "200", "synchronous_commit": "off"}
    with PrivatePostgres(settings) as postgres:
        for database in ("sqlite", "postgresql"):
            pg = postgres if database == "postgresql" else None
            for processes in (1, 2):
                cpus, wrk_cpu = _placement(processes)
                url = pg.create_database(f"bench_{processes}") if pg else ""
                load = proc.load_average()
                say(f"{database}: serve --workers 0 --processes {processes}; load {load:.2f}")
                with ApiServer(processes=processes, database_url=url, cpus=cpus) as server:
                    runs += _measure(server, database, pg, seconds, wrk_cpu, say)
    cpus, wrk_cpu = _placement(1)
    say("sqlite: serve --workers 0 with the access log on")
    with ApiServer(processes=1, database_url="", cpus=cpus, access_log=True) as server:
        runs += _measure(server, "sqlite", None, seconds, wrk_cpu, say, routes=ROUTES[:1])
    return LoadResult(runs, _notes(seconds), len(os.sched_getaffinity(0)))


def _notes(seconds: float) -> list[str]:
    cpus = sorted(os.sched_getaffinity(0))
    version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout
    wrk = version.split(" Copyright")[0].strip() or "wrk"
    speedups = [name for name in ("uvloop", "httptools") if importlib.util.find_spec(name)]
    return [
        f"load: {wrk}, 1 thread, {CONNECTIONS} connections per "
        f"API process, {WARMUP_SECONDS:g} s warm-up then {seconds:g} s measured per route",
        f"load: wrk pinned to CPU {cpus[-1]}; API processes pinned to the other CPUs only when "
        "there is one each, else unpinned; PostgreSQL unpinned",
        "load: CPU per request sums every serve process (and the PostgreSQL server) over the run",
        "load: uvicorn runs on " + (" + ".join(speedups) or "asyncio + h11 (no uvloop, httptools)"),
    ]
