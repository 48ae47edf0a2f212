"""Real processes for the scale tests: PostgreSQL, SeaweedFS, and snapshotd API and worker
processes composed into a cluster.

Everything here starts real programs in their own process groups and temp dirs, so a test can
kill, stop or restart any of them and cleanup still finds every process it started: each
snapshotd process carries a tag in its environment, inherited by Playwright's driver and
Chromium, and every process ever seen below it is remembered by pid and start time, so processes
orphaned by a killed worker are found afterwards even when they were reparented away.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import httpx
import pytest
from sqlalchemy import create_engine, select, text

from snapshotd.store.models import Agent

TAG_VARIABLE = "SNAPSHOTD_PROCESS_TAG"
S3_ACCESS_KEY = "snapshotd-test"
S3_SECRET_KEY = "snapshotd-test-secret"
SHARED_BUCKET = "snapshotd-test"
SNAPSHOTD = Path(sys.executable).parent / "snapshotd"
CHROMIUM_NAMES = ("chrom", "headless")  # /proc/PID/comm of every Chromium build's processes


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _free_port_with_grpc() -> int:
    """A port p with p + 10000 also free: SeaweedFS puts each gRPC listener there."""
    while True:
        port = secrets.randbelow(30000) + 20000
        with socket.socket() as main, socket.socket() as grpc:
            try:
                main.bind(("127.0.0.1", port))
                grpc.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
            return port


def _wait(what: str, check: Any, timeout: float, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


# -- PostgreSQL ----------------------------------------------------------------------------------


def _pg_bin() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not candidates:
        raise RuntimeError("initdb not found: install PostgreSQL (apt-get install postgresql)")
    return candidates[-1].parent


def _as_postgres() -> list[str]:
    """PostgreSQL refuses to run as root; run its tools as the `postgres` user then."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
    return ["runuser", "-u", "postgres", "--"]


class Postgres:
    """A private PostgreSQL cluster, for tests that stop, crash or restart the database."""

    def __init__(self) -> None:
        self.bin = _pg_bin()
        self.run_as = _as_postgres()
        self.dir = Path(tempfile.mkdtemp(prefix="snapshotd-pg-"))
        self.dir.chmod(0o755)
        if self.run_as:
            shutil.chown(self.dir, "postgres")
        self.port = free_port()
        self._initialized = False

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, *args: str) -> None:
        command = [*self.run_as, str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), *args]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        if not self._initialized:
            initdb = [str(self.bin / "initdb"), "-D", str(self.dir / "data"), "-U", "postgres"]
            subprocess.run(
                [*self.run_as, *initdb, "-A", "trust", "--no-sync"],
                check=True,
                capture_output=True,
                timeout=120,
            )
            self._initialized = True
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=200"
        )
        self._pg_ctl("-l", str(self.dir / "log"), "-w", "-t", "90", "-o", options, "start")

    def stop(self, mode: Literal["smart", "fast", "immediate"] = "fast") -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._pg_ctl("-m", mode, "-w", "-t", "90", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        path = self.dir / "log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """A new, empty database on the shared server that scripts/test.sh started: cheaper than a
    private cluster, for tests that never restart PostgreSQL."""
    server = os.environ.get("SNAPSHOTD_TEST_PG_URL", "")
    if not server:
        if os.environ.get("SNAPSHOTD_TEST_REQUIRE_PG"):
            pytest.fail("SNAPSHOTD_TEST_PG_URL is not set")
        pytest.skip("needs the PostgreSQL server that scripts/test.sh starts")
    name = f"scale_{secrets.token_hex(6)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield server.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()


# -- S3 ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class S3Location:
    """A bucket and key prefix on an S3 endpoint: where one cluster keeps its artifacts."""

    endpoint: str
    bucket: str
    prefix: str

    def env(self) -> dict[str, str]:
        return {
            "SNAPSHOTD_BLOBS": f"s3://{self.bucket}/{self.prefix}",
            "SNAPSHOTD_S3_ENDPOINT_URL": self.endpoint,
            "SNAPSHOTD_S3_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "SNAPSHOTD_S3_SECRET_ACCESS_KEY": S3_SECRET_KEY,
        }

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=S3_ACCESS_KEY,
            aws_secret_access_key=S3_SECRET_KEY,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5}),
        )

    def key(self, digest: str) -> str:
        return f"{self.prefix}/{digest[:2]}/{digest[2:4]}/{digest}"

    def get(self, digest: str) -> bytes | None:
        """The stored bytes of a blob, or None when it is not in the bucket."""
        try:
            answer = self.client().get_object(Bucket=self.bucket, Key=self.key(digest))
        except Exception as error:
            if "NoSuchKey" in str(error) or "404" in str(error):
                return None
            raise
        data: bytes = answer["Body"].read()
        return data

    def keys(self) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2")
        return [
            item["Key"]
            for page in pages.paginate(Bucket=self.bucket, Prefix=f"{self.prefix}/")
            for item in page.get("Contents", [])
        ]

    def answers(self) -> bool:
        """True once the bucket exists and takes writes (SeaweedFS answers before it does)."""
        try:
            self.ensure_bucket()
            self.client().put_object(Bucket=self.bucket, Key=f"{self.prefix}/.ready", Body=b"")
        except Exception:
            return False
        return True

    def ensure_bucket(self) -> None:
        client = self.client()
        try:
            client.create_bucket(Bucket=self.bucket)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        except client.exceptions.BucketAlreadyExists:
            pass


def shared_s3() -> S3Location:
    """A unique prefix in the shared bucket of the SeaweedFS that scripts/test.sh started."""
    endpoint = os.environ.get("SNAPSHOTD_TEST_S3_ENDPOINT", "")
    if not endpoint:
        if os.environ.get("SNAPSHOTD_TEST_REQUIRE_PG"):
            pytest.fail("SNAPSHOTD_TEST_S3_ENDPOINT is not set")
        pytest.skip("needs the SeaweedFS server that scripts/test.sh starts")
    location = S3Location(endpoint, SHARED_BUCKET, f"scale-{secrets.token_hex(6)}")
    _wait("the shared S3 gateway", location.answers, 90, 0.5)  # it may still be starting
    return location


class SeaweedS3:
    """A private SeaweedFS with its S3 gateway, for tests that stop the object store."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="snapshotd-s3-"))
        self.port = _free_port_with_grpc()
        self._ports = [_free_port_with_grpc() for _ in range(3)]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def location(self, bucket: str = SHARED_BUCKET) -> S3Location:
        return S3Location(self.endpoint, bucket, f"scale-{secrets.token_hex(6)}")

    def start(self) -> None:
        identities = {
            "identities": [
                {
                    "name": "snapshotd",
                    "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        (self.dir / "s3.json").write_text(json.dumps(identities))
        master, volume, filer = self._ports
        command = [
            str(Path(sys.executable).parent / "weed"),
            "server",
            f"-dir={self.dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={master}",
            f"-volume.port={volume}",
            f"-filer.port={filer}",
            "-s3",
            f"-s3.port={self.port}",
            f"-s3.config={self.dir / 's3.json'}",
            # Listeners on fixed ports would collide with any other SeaweedFS on the machine.
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=50",
        ]
        with (self.dir / "log").open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        probe = self.location()
        _wait("SeaweedFS S3 gateway", lambda: self._answers(probe), 90, 0.5)

    def _answers(self, probe: S3Location) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"SeaweedFS exited:\n{_tail(self.dir / 'log')}")
        return probe.answers()

    def stop(self) -> None:
        if self.process is not None:
            _stop_group(self.process, timeout=1)  # its graceful stop is slow and not needed
            self.process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# -- processes -----------------------------------------------------------------------------------


def _stop_group(process: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM to the process, then SIGKILL to its whole group if it has not gone in time."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    return process.wait(10)


def _tail(path: Path, lines: int = 200) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass(frozen=True)
class _Stat:
    parent: int
    started: int  # clock ticks after boot: with the pid, names one process even if pids recycle
    running: bool  # not a zombie


def _stat(pid: int) -> _Stat | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return _Stat(int(fields[1]), int(fields[19]), fields[0] != "Z")


def _processes() -> dict[int, _Stat]:
    """Every process on the machine, read from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            found[int(entry.name)] = stat
    return found


def is_chromium(pid: int) -> bool:
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return False
    return name.startswith(CHROMIUM_NAMES)


def is_running(pid: int) -> bool:
    """True for a live process (a zombie has finished: it only waits for its parent)."""
    stat = _stat(pid)
    return stat is not None and stat.running


def tagged_processes(prefix: str) -> list[int]:
    """Live processes whose environment carries a tag starting with `prefix`, orphans too."""
    wanted = f"{TAG_VARIABLE}={prefix}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environment = (entry / "environ").read_bytes()
        except OSError:
            continue
        tagged = any(item.startswith(wanted) for item in environment.split(b"\0"))
        if tagged and is_running(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


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
        self.port = free_port() if kind == "api" else 0
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
            _wait(f"{self.name} ready", check, timeout, 0.25)
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
        return _stop_group(self.process, timeout)

    def descendants(self) -> list[int]:
        """Live processes below this one (Playwright's driver, Chromium and its helpers)."""
        return sorted(pid for pid, _ in self._below(_processes()) if pid != self.pid)

    def _below(self, processes: dict[int, _Stat]) -> list[tuple[int, int]]:
        if not self.alive or self.pid not in processes:
            return []
        found, frontier = [self.pid], {self.pid}
        while frontier:
            frontier = {pid for pid, stat in processes.items() if stat.parent in frontier}
            found += frontier
        return [(pid, processes[pid].started) for pid in found if processes[pid].running]

    def remember(self, processes: dict[int, _Stat] | None = None) -> None:
        """Records this incarnation's process and everything now below it."""
        below = self._below(processes if processes is not None else _processes())
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
            if (stat := _stat(pid)) and stat.running and stat.started == started
        }
        for n in wanted:
            found.update(tagged_processes(f"{self.tag_prefix}{n}"))
        return sorted(found)

    def chromium(self) -> list[int]:
        return [pid for pid in self.descendants() if is_chromium(pid)]

    def log_text(self) -> str:
        return _tail(self.log_path, 400)


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
            processes = _processes()
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
        # Migrates the database before any service starts, so they never race to do it.
        self.token = self.cli(
            "token", "create", "--org", "scale", "--email", "ops@scale.test", "--role", "admin"
        ).strip()
        apis, workers = self._counts
        started = [self._add("api") for _ in range(apis)]
        started += [self._add("worker") for _ in range(workers)]
        self._census.start()
        for service in started:
            service.wait_ready()
        return self

    def _add(self, kind: Literal["api", "worker"], env: Mapping[str, str] | None = None) -> Service:
        group = self.apis if kind == "api" else self.workers
        service = Service(kind, f"{kind}{len(group)}", {**self.env, **(env or {})}, self.root)
        group.append(service)
        return service.start()

    def add_worker(self, env: Mapping[str, str] | None = None) -> Service:
        return self._add("worker", env).wait_ready()

    def add_api(self, env: Mapping[str, str] | None = None) -> Service:
        return self._add("api", env).wait_ready()

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
        survivors = {pid: _describe(pid) for pid in self.leftovers()}
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


def _describe(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    except OSError:
        return "(gone)"
