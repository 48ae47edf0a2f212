"""snapshotd's own processes: API and worker services, and a cluster of them sharing one database
and one blob store.

Each service runs in its own process group and temp dir, so a test can kill, stop or restart it
and cleanup still finds every process it started: see `Service` for how orphans are tracked.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import httpx
from sqlalchemy import create_engine, select

from snapshotd.store.models import Agent
from tests.cluster.infra import S3Location
from tests.cluster.processes import (
    TAG_VARIABLE,
    ProcStat,
    all_processes,
    command_line,
    free_port,
    is_chromium,
    read_stat,
    stop_group,
    tagged_processes,
    tail,
    wait_for,
)

SNAPSHOTD = Path(sys.executable).parent / "snapshotd"


class Service:
    """One `snapshotd serve --workers 0` (kind "api") or `snapshotd worker` process.

    `start` may be called again after the process died or was killed: each run is a new
    incarnation with its own tag, so processes left behind by an earlier one can be told apart.
    Every process seen below an incarnation is remembered (see `remember`), because an orphan
    is reparented away from it and Chromium's helpers overwrite their inherited environment.
    """

    def __init__(
        self, kind: Literal["api", "worker"], name: str, env: Mapping[str, str], root: Path
    ) -> None:
        self.kind, self.name = kind, name
        self.dir = root / name
        self.tmp = self.dir / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "log"
        self.env = {**env, "TMPDIR": str(self.tmp), "PYTHONUNBUFFERED": "1"}
        # An agent row of its own tells when this worker is up (see `wait_ready`).
        self.env.setdefault("SNAPSHOTD_AGENT_NAME", f"agent-{name}-{secrets.token_hex(3)}")
        self.tag_prefix = f"{env.get(TAG_VARIABLE, 'snapshotd')}/{name}/"
        self.port = free_port()  # the API's, or the worker's metrics
        if kind == "worker":
            self.env.setdefault("SNAPSHOTD_WORKER_METRICS_ADDRESS", f"127.0.0.1:{self.port}")
        self.incarnation = 0
        self.seen: dict[int, set[tuple[int, int]]] = {}  # incarnation -> (pid, start time)
        self._seen_lock = threading.Lock()
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = datetime.now(UTC)

    @property
    def url(self) -> str:
        assert self.kind == "api", "only API processes listen"
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    @property
    def tag(self) -> str:
        return f"{self.tag_prefix}{self.incarnation}"

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was not started"
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> Self:
        assert not self.alive, f"{self.name} is already running"
        self.incarnation += 1
        if self.kind == "api":
            command = [str(SNAPSHOTD), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
            command += ["--workers", "0"]
        else:
            command = [str(SNAPSHOTD), "worker"]
        self.started_at = datetime.now(UTC)
        with self.log_path.open("ab") as log:
            log.write(f"---- {self.name} incarnation {self.incarnation}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                command,
                env={**self.env, TAG_VARIABLE: self.tag},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.remember()
        return self

    def wait_ready(self, timeout: float = 120) -> Self:
        """Waits for /readyz (API) or for the worker to register its agent after its browser
        and egress guard came up."""
        check = self._api_ready if self.kind == "api" else self._worker_ready
        try:
            wait_for(f"{self.name} ready", check, timeout, 0.25)
        except TimeoutError as error:
            raise TimeoutError(f"{error}\n{self.name} log:\n{self.log_text()}") from None
        return self

    def _exited(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with {self.process.returncode}:\n{self.log_text()}"
            )

    def _api_ready(self) -> bool:
        self._exited()
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def _worker_ready(self) -> bool:
        self._exited()
        engine = create_engine(self.env["SNAPSHOTD_DATABASE_URL"])
        try:
            with engine.connect() as connection:
                seen = connection.scalar(
                    select(Agent.last_seen_at).where(Agent.name == self.env["SNAPSHOTD_AGENT_NAME"])
                )
        except Exception:
            return False  # not migrated yet, or the database is down
        finally:
            engine.dispose()
        return seen is not None and seen >= self.started_at - timedelta(seconds=1)

    def signal(self, sig: signal.Signals) -> None:
        self.remember()
        os.kill(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL to the snapshotd process alone, as the OOM killer or `kill -9` would."""
        self.signal(signal.SIGKILL)
        assert self.process is not None
        self.process.wait(30)

    def kill_group(self) -> None:
        """SIGKILL to the process and its group (Playwright's driver too, not Chromium, which
        runs in a group of its own), as a supervisor stopping the whole group would."""
        self.remember()
        os.killpg(self.pid, signal.SIGKILL)
        assert self.process is not None
        self.process.wait(30)

    def stop(self, timeout: float = 60) -> int | None:
        """SIGTERM (a graceful stop), SIGKILL to the whole group after `timeout` s."""
        if self.process is None:
            return None
        self.remember()
        return stop_group(self.process, timeout)

    def descendants(self) -> list[int]:
        """Live processes below this one (Playwright's driver, Chromium and its helpers)."""
        return sorted(pid for pid, _ in self._below(all_processes()) if pid != self.pid)

    def _below(self, processes: dict[int, ProcStat]) -> list[tuple[int, int]]:
        if not self.alive or self.pid not in processes:
            return []
        found, frontier = [self.pid], {self.pid}
        while frontier:
            frontier = {pid for pid, stat in processes.items() if stat.parent in frontier}
            found += frontier
        return [(pid, processes[pid].started) for pid in found if processes[pid].running]

    def remember(self, processes: dict[int, ProcStat] | None = None) -> None:
        """Records this incarnation's process and everything now below it."""
        below = self._below(processes if processes is not None else all_processes())
        with self._seen_lock:
            self.seen.setdefault(self.incarnation, set()).update(below)

    def survivors(self, incarnation: int | None = None) -> list[int]:
        """Processes of one incarnation (default: every one but the running one) that still run:
        anything a dead incarnation left behind."""
        wanted = [incarnation] if incarnation is not None else list(self.seen)
        if incarnation is None and self.alive:
            wanted.remove(self.incarnation)
        with self._seen_lock:
            seen = set().union(*(self.seen.get(n, set()) for n in wanted))
        found = {
            pid
            for pid, started in seen
            if (stat := read_stat(pid)) and stat.running and stat.started == started
        }
        for n in wanted:
            found.update(tagged_processes(f"{self.tag_prefix}{n}"))
        return sorted(found)

    def chromium(self) -> list[int]:
        return [pid for pid in self.descendants() if is_chromium(pid)]

    def log_text(self) -> str:
        return tail(self.log_path, 400)


class Cluster:
    """N API processes and M workers sharing one database, one blob store (an S3 prefix, or a
    folder in a shared data dir) and one manifest signing key, with a short job lease."""

    def __init__(
        self,
        root: Path,
        *,
        database_url: str,
        s3: S3Location | None = None,
        apis: int = 2,
        workers: int = 2,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.root, self.s3 = root, s3
        self.tag = f"cluster-{secrets.token_hex(4)}"
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("SNAPSHOTD_")}
        self.env: dict[str, str] = {
            **inherited,
            TAG_VARIABLE: self.tag,
            "SNAPSHOTD_DATABASE_URL": database_url,
            "SNAPSHOTD_DATA_DIR": str(root / "data"),
            "SNAPSHOTD_MANIFEST_KEY_FILE": str(root / "manifest-key.pem"),
            "SNAPSHOTD_JOB_LEASE_SECONDS": "5",
            "SNAPSHOTD_EGRESS_ALLOW": "127.0.0.1",
            "SNAPSHOTD_POLL_INTERVAL_SECONDS": "0.2",
            **(s3.env() if s3 else {}),
            **(env or {}),
        }
        self.apis: list[Service] = []
        self.workers: list[Service] = []
        self._counts = (apis, workers)
        self.token = ""
        self._census_stop = threading.Event()
        self._census = threading.Thread(target=self._take_census, name="census", daemon=True)

    def _take_census(self) -> None:
        """Keeps every service's record of its processes fresh, for `Service.survivors`."""
        while not self._census_stop.wait(0.5):
            processes = all_processes()
            for service in self.apis + self.workers:
                service.remember(processes)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def cli(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        """Runs one `snapshotd` command with the cluster's settings (and `env` over them);
        returns its stdout."""
        done = subprocess.run(
            [str(SNAPSHOTD), *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode:
            raise RuntimeError(f"snapshotd {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout

    def start(self) -> Self:
        # One signing key for every service, made before any starts, as docs/deploy.md says.
        key = Path(self.env["SNAPSHOTD_MANIFEST_KEY_FILE"])
        if not key.exists():
            self.cli("keygen", str(key))
        # Migrates the database before any service starts, so they never race to do it.
        self.token = self.cli(
            "token", "create", "--org", "scale", "--email", "ops@scale.test", "--role", "admin"
        ).strip()
        apis, workers = self._counts
        started = [self.launch("api") for _ in range(apis)]
        started += [self.launch("worker") for _ in range(workers)]
        self._census.start()
        for service in started:
            service.wait_ready()
        return self

    def launch(
        self, kind: Literal["api", "worker"], env: Mapping[str, str] | None = None
    ) -> Service:
        """Starts one more service without waiting for it to be ready."""
        group = self.apis if kind == "api" else self.workers
        service = Service(kind, f"{kind}{len(group)}", {**self.env, **(env or {})}, self.root)
        group.append(service)
        return service.start()

    def add_worker(self, env: Mapping[str, str] | None = None) -> Service:
        return self.launch("worker", env).wait_ready()

    def add_api(self, env: Mapping[str, str] | None = None) -> Service:
        return self.launch("api", env).wait_ready()

    def client(self, api: int = 0, **options: Any) -> httpx.Client:
        options.setdefault("timeout", 30)
        return httpx.Client(base_url=self.apis[api].url, headers=self.headers, **options)

    def database(self) -> Any:
        """A SQLAlchemy engine on the cluster's database, for checking the job rows."""
        return create_engine(self.env["SNAPSHOTD_DATABASE_URL"])

    def leftovers(self, timeout: float = 20) -> list[int]:
        """Processes of stopped services still running after `timeout` s (Chromium exits when
        its driver's pipe closes, which takes a moment)."""

        def left() -> list[int]:
            found = set(tagged_processes(f"{self.tag}/"))
            for service in self.apis + self.workers:
                found.update(service.survivors())
            return sorted(found)

        deadline = time.monotonic() + timeout
        while (found := left()) and time.monotonic() < deadline:
            time.sleep(0.25)
        return found

    def stop(self) -> dict[int, str]:
        """Stops every service gracefully; returns the processes that survived (now killed),
        each with its command line."""
        self._census_stop.set()
        for service in self.workers + self.apis:
            if service.alive:
                service.signal(signal.SIGTERM)
        for service in self.workers + self.apis:
            service.stop()
        survivors = {pid: command_line(pid) for pid in self.leftovers()}
        for pid in survivors:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if survivors:
            listed = "\n".join(f"{pid} {what}" for pid, what in survivors.items())
            print(f"processes that outlived their service:\n{listed}")
        return survivors

    def dump_logs(self) -> None:
        for service in self.apis + self.workers:
            print(f"===== {service.name} ({service.log_path})\n{service.log_text()}")

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            self.dump_logs()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        survivors = self.stop()
        if exc is not None or survivors:
            self.dump_logs()
        if exc is None:
            assert not survivors, f"processes outlived the cluster: {survivors}"
