"""`snapshotd serve` as a subprocess with its own data dir, token and port, always cleaned up."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench import proc

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Shutdown:
    seconds: float
    exit_code: int | None
    browsers_before: int
    browsers_at_exit: int
    leftover: list[proc.Proc]
    in_flight: dict[str, str] = field(default_factory=dict)

    @property
    def leftover_browsers(self) -> list[proc.Proc]:
        return [p for p in self.leftover if p.is_browser]

    @property
    def how(self) -> str:
        if self.exit_code is None:
            return "did NOT exit"
        if self.exit_code < 0:
            return f"killed by signal {signal.Signals(-self.exit_code).name}"
        return f"exit status {self.exit_code}"


class SnapshotdServer:
    def __init__(
        self,
        *,
        concurrency: int,
        ready_timeout: float = 120.0,
        env: Mapping[str, str] | None = None,
        prefix: Sequence[str] = (),
    ) -> None:
        """`env` adds to or overrides the server's environment; `prefix` goes before the serve
        command (it must end by exec'ing the rest, so that the pid stays the server's)."""
        self.concurrency = concurrency
        self.extra_env = dict(env or {})
        self.prefix = list(prefix)
        self.ready_timeout = ready_timeout
        self.port = 0
        self.token = ""
        self.process: subprocess.Popen[bytes] | None = None
        self.root: Path | None = None
        # Every descendant ever seen, so cleanup can find orphans of a serve that died abruptly.
        self._seen: dict[tuple[int, int], proc.Proc] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        assert self.root is not None
        return self.root / "serve.log"

    def _env(self) -> dict[str, str]:
        assert self.root is not None
        return {
            **os.environ,
            "SNAPSHOTD_DATA_DIR": str(self.root / "data"),
            "SNAPSHOTD_EGRESS_ALLOW": "127.0.0.1/32",
            "SNAPSHOTD_WORKER_CONCURRENCY": str(self.concurrency),
            # Throughput is measured here, not the limits that protect a shared instance.
            "SNAPSHOTD_RATE_LIMITS": "native=0",
            "SNAPSHOTD_TOKEN_REQUESTS_PER_MINUTE": "0",
            **self.extra_env,
        }

    def __enter__(self) -> SnapshotdServer:
        self.root = Path(tempfile.mkdtemp(prefix="snapshotd-bench-"))
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _create_token(self, env: dict[str, str]) -> str:
        """An admin token for the bench organization, made with the CLI like an operator would."""
        created = subprocess.run(
            [str(BIN / "snapshotd"), "token", "create", "--org", "bench"]
            + ["--email", "b@bench.test", "--role", "admin"],
            env=env,
            capture_output=True,
            timeout=120,
        )
        if created.returncode != 0:
            raise RuntimeError(f"token create failed: {created.stderr.decode()[-2000:]}")
        return created.stdout.decode().strip()

    def _start(self) -> None:
        env = self._env()
        self.token = self._create_token(env)
        self.port = free_port()
        with self.log_path.open("wb") as log:
            # Own session: a terminal Ctrl-C reaches only the bench, which then shuts this down.
            self.process = subprocess.Popen(
                [*self.prefix, str(BIN / "snapshotd"), "serve", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.ready_timeout
        with httpx.Client(base_url=self.url, timeout=5.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"snapshotd serve exited with {self.process.returncode}:\n{self.log_tail()}"
                    )
                try:
                    if client.get("/readyz").status_code == 200:
                        self.descendants()
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise RuntimeError(f"snapshotd serve not ready in {self.ready_timeout:.0f} s")

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def descendants(self) -> list[proc.Proc]:
        assert self.process is not None
        found = proc.descendants(self.process.pid)
        self._seen.update({(p.pid, p.start): p for p in found})
        return found

    def cpu_seconds(self) -> float:
        """User + system CPU of the serve process and every live process under it."""
        assert self.process is not None
        tree = proc.descendants(self.process.pid, include_root=True)
        return sum(proc.cpu_seconds(p.pid) for p in tree)

    def pss_mib(self) -> tuple[float, list[proc.Proc]]:
        assert self.process is not None
        total, counted = proc.tree_pss_mib(self.process.pid)
        self._seen.update({(p.pid, p.start): p for p in counted if p.pid != self.process.pid})
        return total, counted

    def shutdown(self, timeout: float = 60.0, grace: float = 5.0) -> Shutdown:
        """SIGTERM, wait for exit, then report which recorded descendants outlived it.

        Browsers still alive at exit get `grace` seconds to go (Playwright's driver ends them
        when its pipe closes); whatever is alive after that is a leftover.
        """
        assert self.process is not None
        before = self.descendants()
        began = time.perf_counter()
        self.process.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        seconds = time.perf_counter() - began
        at_exit = [p for p in before if proc.alive(p)]
        deadline = time.monotonic() + grace
        remaining = at_exit
        while remaining and time.monotonic() < deadline:
            time.sleep(0.1)
            remaining = [p for p in remaining if proc.alive(p)]
        return Shutdown(
            seconds,
            code,
            browsers_before=sum(p.is_browser for p in before),
            browsers_at_exit=sum(p.is_browser for p in at_exit),
            leftover=remaining,
        )

    def statuses(self, snapshot_ids: list[str]) -> dict[str, str]:
        """Snapshot statuses read from the database file, for when the API is gone."""
        assert self.root is not None
        path = self.root / "data" / "snapshotd.db"
        marks = ",".join("?" * len(snapshot_ids))
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            rows = db.execute(
                f"SELECT id, status FROM snapshots WHERE id IN ({marks})", snapshot_ids
            ).fetchall()
        return {str(key): str(value) for key, value in rows}

    def completed_at(self, snapshot_ids: list[str]) -> dict[str, float]:
        """Unix times at which snapshots were stored as complete, read from the database file."""
        assert self.root is not None
        path = self.root / "data" / "snapshotd.db"
        marks = ",".join("?" * len(snapshot_ids))
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            rows = db.execute(
                f"SELECT id, completed_at FROM snapshots WHERE id IN ({marks})", snapshot_ids
            ).fetchall()
        stamps = {key: datetime.fromisoformat(value) for key, value in rows if value}
        return {key: value.replace(tzinfo=UTC).timestamp() for key, value in stamps.items()}

    def __exit__(self, *exc: object) -> None:
        try:
            if self.process is not None and self.process.poll() is None:
                self.descendants()
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(20)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            for leftover in self._seen.values():
                proc.kill_exact(leftover)
        finally:
            if self.root is not None:
                shutil.rmtree(self.root, ignore_errors=True)
