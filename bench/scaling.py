"""`python -m bench.scaling [--quick] [-n JOBS]`: jobs/s of one `snapshotd worker` vs two.

Each worker is its own process, started under `taskset` on one core (core 0 alone, then cores 0
and 1), so its Playwright driver and Chromium inherit the pin. Both runs share one private
PostgreSQL, started here from the machine's initdb: several worker processes are a PostgreSQL
deployment (claims with SKIP LOCKED, wake-ups by LISTEN/NOTIFY), where SQLite would serialize
their writes and leave them polling. Each batch is queued up front in one transaction through the
service layer, so no API process is in the measured path; it is timed from that commit to the last
job's `finished_at`.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import astuple, dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select

from bench import proc
from bench.client import BenchFailure
from bench.pages import PageServer, build_page
from bench.postgres import PrivatePostgres, check
from bench.report import Row, render
from bench.server import BIN
from snapshotd.config import Settings
from snapshotd.services.accounts import ensure_org
from snapshotd.services.capture_request import parse_request
from snapshotd.services.snapshots import CAPTURE_JOB, Snapshots
from snapshotd.store.blobs import make_blob_store
from snapshotd.store.db import Database
from snapshotd.store.models import Job, utcnow
from snapshotd.store.queue import JobQueue

TARGET = 1.8
POLL_SECONDS = 0.2
READY_SECONDS = 120.0
CLOCK = os.sysconf("SC_CLK_TCK")
Ticks = dict[int, tuple[int, int]]


@dataclass
class Memory:
    rss_mib: float
    pss_mib: float
    processes: int


@dataclass
class Usage:
    """CPU seconds: busy on all cores, and ours by whom. A child that ended is counted through its
    parent's cutime, so short-lived renderers are not lost."""

    busy: float
    workers: float
    database: float
    bench: float

    @classmethod
    def now(cls, workers: list[int], postmaster: int) -> Usage:
        own = resource.getrusage(resource.RUSAGE_SELF)
        busy = sum(ticks for ticks, _total in _core_ticks().values()) / CLOCK
        ours = sum(_tree_cpu(worker) for worker in workers)
        return cls(busy, ours, _tree_cpu(postmaster), own.ru_utime + own.ru_stime)

    def __sub__(self, start: Usage) -> Usage:
        return Usage(*(now - then for now, then in zip(astuple(self), astuple(start), strict=True)))

    @property
    def others(self) -> float:
        """CPU that other programs on the machine took meanwhile."""
        return max(0.0, self.busy - self.workers - self.database - self.bench)


@dataclass
class Batch:
    cores: tuple[int, ...]
    jobs: int
    seconds: float
    failures: list[str]
    busy: dict[int, float]
    cpu: Usage
    pinning: list[str]
    idle: list[Memory]
    loaded: list[Memory]

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds if self.seconds else 0.0


@dataclass
class ScalingResult:
    database: str
    concurrency: int
    page_bytes: int
    batches: list[Batch]
    load: tuple[float, float]


def _memory(root: int) -> Memory:
    """RSS and PSS summed over `root` and its descendants, Chromium included."""
    tree = proc.descendants(root, include_root=True)
    kib = {"Rss": 0, "Pss": 0}
    for member in tree:
        with suppress(OSError):
            for line in Path(f"/proc/{member.pid}/smaps_rollup").read_text().splitlines():
                name, _, rest = line.partition(":")
                if name in kib:
                    kib[name] += int(rest.split()[0])
    return Memory(kib["Rss"] / 1024, kib["Pss"] / 1024, len(tree))


def _settled_memory(root: int) -> Memory:
    """The median of three readings by PSS, once the tree has had a second to settle."""
    time.sleep(1.0)
    readings = [_memory(root), _memory(root), _memory(root)]
    return sorted(readings, key=lambda reading: reading.pss_mib)[1]


def _core_ticks() -> Ticks:
    """Busy and total jiffies of every core since boot, from /proc/stat."""
    ticks = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            numbers = [int(value) for value in values[:8]]
            idle = numbers[3] + numbers[4]
            ticks[int(name[3:])] = (sum(numbers) - idle, sum(numbers))
    return ticks


def _busy(before: Ticks, after: Ticks) -> dict[int, float]:
    shares = {}
    for core, (busy, total) in after.items():
        elapsed = total - before[core][1]
        shares[core] = (busy - before[core][0]) / elapsed if elapsed else 0.0
    return shares


def _tree_cpu(root: int) -> float:
    """User + system CPU of `root`, its descendants and their reaped children."""
    ticks = 0
    for member in proc.descendants(root, include_root=True):
        with suppress(OSError):
            fields = Path(f"/proc/{member.pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += sum(int(value) for value in fields[11:15])
    return ticks / CLOCK


class PinnedWorker:
    """`taskset --cpu-list CORE snapshotd worker`, stopped with SIGTERM like a service manager."""

    def __init__(self, core: int, env: dict[str, str], log: Path) -> None:
        self.core = core
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                ["taskset", "--cpu-list", str(core), str(BIN / "snapshotd"), "worker"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.seen: dict[tuple[int, int], proc.Proc] = {}

    def tree(self) -> list[proc.Proc]:
        found = proc.descendants(self.process.pid, include_root=True)
        self.seen.update({(p.pid, p.start): p for p in found})
        return found

    def wait_ready(self) -> None:
        """Ready once its browser runs: the pool launches it before the worker claims jobs."""
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log.read_text(errors="replace")[-3000:]
                raise BenchFailure(f"worker on core {self.core} exited:\n{tail}")
            if any(p.is_browser for p in self.tree()):
                return
            time.sleep(0.2)
        raise BenchFailure(f"worker on core {self.core} started no browser in {READY_SECONDS} s")

    def pinning(self) -> str:
        """Every thread's allowed cores, read back from Linux. Chromium pins a couple of its own
        threads to core 0; they are counted with the CPU they used."""
        threads, elsewhere, ticks = 0, 0, 0
        tree = self.tree()
        for member in tree:
            for task in Path(f"/proc/{member.pid}/task").glob("*"):
                with suppress(OSError, ValueError):
                    allowed = os.sched_getaffinity(int(task.name))
                    threads += 1
                    if allowed != {self.core}:
                        elsewhere += 1
                        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                        ticks += int(fields[11]) + int(fields[12])
        cpu = ticks / CLOCK
        return (
            f"worker on core {self.core}: {threads - elsewhere} of {threads} threads in "
            f"{len(tree)} processes pinned to it; the {elsewhere} others used {cpu:.2f} s of CPU"
        )

    def stop(self) -> None:
        self.tree()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for member in self.seen.values():
            proc.kill_exact(member)


class Queue:
    """Queues captures through the service layer and watches them end in the jobs table."""

    def __init__(self, database_url: str, data_dir: Path, page_url: str) -> None:
        # No creation limit and a queue long enough for any batch: throughput is measured here.
        settings = Settings(
            database_url=database_url,
            data_dir=data_dir,
            rate_limits={"native": "0"},
            queue_max_length=100_000,
        )
        self.db = Database.from_url(database_url)
        queue = JobQueue(self.db, max_length=settings.queue_max_length)
        self.snapshots = Snapshots(settings, self.db, queue, make_blob_store(settings))
        self.options = parse_request({"url": page_url, "width": 1280, "height": 800})
        with self.db.session() as session:
            self.org_id = ensure_org(session, "scaling").id

    def enqueue(self, count: int) -> tuple[list[str], datetime]:
        """`count` page captures committed at once: their job ids and the commit time."""
        stored = self.options.model_dump(mode="json", exclude_defaults=True)
        with self.db.session() as session:
            created = [
                self.snapshots.create(
                    session,
                    self.org_id,
                    "page",
                    CAPTURE_JOB,
                    url=self.options.url,
                    options=stored,
                    surface="native",
                    actor="bench",
                )
                for _ in range(count)
            ]
        return [str(snapshot.job_id) for snapshot in created], utcnow()

    def wait(self, ids: list[str], timeout: float) -> tuple[datetime, list[str]]:
        """Waits for every job to end; returns the last `finished_at` and the failures."""
        ended = Job.state.in_(("complete", "failed"))
        deadline = time.monotonic() + timeout
        with self.db.session() as session:
            while session.scalar(select(func.count()).where(Job.id.in_(ids), ended)) != len(ids):
                if time.monotonic() > deadline:
                    raise BenchFailure(f"{len(ids)} jobs did not all end in {timeout:.0f} s")
                session.rollback()  # end the read transaction so the next count sees new rows
                time.sleep(POLL_SECONDS)
            last = session.scalar(select(func.max(Job.finished_at)).where(Job.id.in_(ids)))
            failed = select(Job.error).where(Job.id.in_(ids), Job.state == "failed")
            failures = list(session.scalars(failed))
        assert last is not None
        return last.replace(tzinfo=last.tzinfo or UTC), failures

    def close(self) -> None:
        self.db.dispose()


def _batch(
    cores: tuple[int, ...],
    jobs: int,
    env: dict[str, str],
    queue: Queue,
    postgres: PrivatePostgres,
    say: Callable[[str], None],
) -> Batch:
    logs = Path(env["SNAPSHOTD_DATA_DIR"]).parent
    with ExitStack() as stack:
        workers = []
        for core in cores:
            workers.append(PinnedWorker(core, env, logs / f"worker-{len(cores)}-{core}.log"))
            stack.callback(workers[-1].stop)
        for worker in workers:
            worker.wait_ready()
        idle = [_settled_memory(w.process.pid) for w in workers]
        warm = 3 * int(env["SNAPSHOTD_WORKER_CONCURRENCY"]) * len(cores)
        say(f"{len(cores)} worker(s): warm-up, {warm} jobs; load {proc.load_average():.2f}")
        queue.wait(queue.enqueue(warm)[0], timeout=READY_SECONDS)
        say(f"{len(cores)} worker(s): {jobs} jobs queued at once")
        ids, committed = queue.enqueue(jobs)
        pids = [worker.process.pid for worker in workers]
        ticks, before = _core_ticks(), Usage.now(pids, postgres.postmaster())
        last, failures = queue.wait(ids, timeout=max(120.0, jobs * 5.0))
        busy, usage = _busy(ticks, _core_ticks()), Usage.now(pids, postgres.postmaster()) - before
        pinning = [w.pinning() for w in workers]
        loaded = [_settled_memory(w.process.pid) for w in workers]
    seconds = (last - committed).total_seconds()
    return Batch(cores, jobs, seconds, failures, busy, usage, pinning, idle, loaded)


def run(
    quick: bool, say: Callable[[str], None], *, jobs: int | None = None, concurrency: int = 2
) -> ScalingResult:
    """One worker on core 0, then two on cores 0 and 1, against the same database."""
    jobs = jobs or (30 if quick else 120)
    if len(os.sched_getaffinity(0) & {0, 1}) < 2:
        raise BenchFailure("the scaling bench needs cores 0 and 1")
    root = Path(tempfile.mkdtemp(prefix="snapshotd-scaling-"))
    page = build_page()
    load = proc.load_average()
    try:
        # The database is not what is measured: keep disk waits out of the figures.
        postgres = PrivatePostgres({"fsync": "off"}, prefix="snapshotd-scaling-pg-")
        with postgres, PageServer(page) as pages:
            env = {
                **os.environ,
                "SNAPSHOTD_DATABASE_URL": postgres.url,
                "SNAPSHOTD_DATA_DIR": str(root / "data"),
                "SNAPSHOTD_EGRESS_ALLOW": "127.0.0.1/32",
                "SNAPSHOTD_WORKER_CONCURRENCY": str(concurrency),
            }
            check([str(BIN / "snapshotd"), "migrate"], "snapshotd migrate", env)
            queue = Queue(postgres.url, root / "data", pages.url)
            try:
                batches = [_batch(c, jobs, env, queue, postgres, say) for c in ((0,), (0, 1))]
            finally:
                queue.close()
            database = f"PostgreSQL {postgres.version()} (private, fsync off)"
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return ScalingResult(database, concurrency, len(page), batches, (load, proc.load_average()))


def describe(result: ScalingResult) -> str:
    """How the figures were taken, to print above the table."""
    lines = [
        f"scaling: `snapshotd worker` processes, concurrency {result.concurrency} each, under "
        f"taskset on their own core, on one {result.database} and a folder blob store;",
        f"  a static {result.page_bytes // 1024} KiB loopback page, 1280x800 PNG with evidence. "
        "Each batch is committed at once through the service layer after a warm-up, and timed",
        "  to the last job's finished_at. PostgreSQL, the page server and the bench share the "
        "cores with the workers, unpinned, in both runs.",
        "  RSS counts shared pages in every process; PSS divides them, so a worker's PSS drops "
        "when a second worker shares its libraries.",
        f"  1-min load average {result.load[0]:.2f} at start, {result.load[1]:.2f} at end "
        "(other work on the machine skews every figure).",
    ]
    return "\n".join(lines + [f"  {line}" for b in result.batches for line in b.pinning])


def rows(result: ScalingResult) -> list[Row]:
    table: list[Row] = []
    single = result.batches[0].rate
    for batch in result.batches:
        workers = "1 worker" if len(batch.cores) == 1 else f"{len(batch.cores)} workers"
        cores = ",".join(map(str, batch.cores))
        row = Row(f"{workers} on core(s) {cores}: jobs/s (n={batch.jobs})", f"{batch.rate:.2f}")
        if len(batch.cores) > 1 and single:
            ratio = batch.rate / single
            row.baseline, row.ratio = f"{single:.2f}", f"{ratio:.2f}x"
            row.target, row.met = f">= {TARGET:.2f}x", "yes" if ratio >= TARGET else "NO"
        busy = ", ".join(f"core {core} {share:.0%}" for core, share in sorted(batch.busy.items()))
        cpu, per_job = batch.cpu, 1000 / batch.jobs
        spent = [cpu.workers * per_job, cpu.database * per_job, cpu.bench * per_job]
        table += [
            row,
            Row("  cores busy during the batch", busy),
            Row(
                "  CPU per job: workers / PostgreSQL / bench",
                "{:.0f} / {:.0f} / {:.0f} ms".format(*spent),
            ),
            Row("  CPU other programs took meanwhile", f"{cpu.others:.1f} of {cpu.busy:.1f} s"),
        ]
        if batch.failures:
            table.append(Row("  failed jobs", f"{len(batch.failures)}: {batch.failures[0][:60]}"))
        for core, idle, loaded in zip(batch.cores, batch.idle, batch.loaded, strict=True):
            name = f"  worker on core {core}: RSS / PSS idle -> after ({loaded.processes} procs)"
            figure = f"{idle.rss_mib:.0f} / {idle.pss_mib:.0f} -> "
            table.append(Row(name, figure + f"{loaded.rss_mib:.0f} / {loaded.pss_mib:.0f} MiB"))
    return table


def _say(text: str) -> None:
    print(f"... {text}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="30 jobs per batch instead of 120")
    parser.add_argument("-n", "--jobs", type=int, help="jobs in each timed batch")
    parser.add_argument("--concurrency", type=int, default=2, help="captures per worker (2)")
    args = parser.parse_args(argv)
    # Unwind like Ctrl-C, so PostgreSQL and the workers are always shut down.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        result = run(args.quick, _say, jobs=args.jobs, concurrency=args.concurrency)
    except KeyboardInterrupt:
        print("\ninterrupted; the database and workers were shut down", file=sys.stderr)
        return 130
    except BenchFailure as error:
        print(f"\nbench failed: {error}", file=sys.stderr)
        return 1
    print(f"\n{describe(result)}\n\n{render(rows(result))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
