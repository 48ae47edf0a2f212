"""A throwaway PostgreSQL for the benches, started from the machine's own initdb and pg_ctl.

The server refuses to run as root, so as root its tools run as the `postgres` user (created when
missing). Each server has its own temp dir and loopback port, and is stopped and removed on exit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from contextlib import suppress
from pathlib import Path

import psycopg
from psycopg import sql

from bench.client import BenchFailure
from bench.server import free_port


def check(command: Sequence[str], what: str, env: Mapping[str, str] | None = None) -> None:
    """Runs one setup command; when it fails, the bench fails with the tail of its output."""
    answer = subprocess.run(list(command), env=env, capture_output=True, text=True, timeout=120)
    if answer.returncode != 0:
        raise BenchFailure(f"{what} failed: {(answer.stdout + answer.stderr)[-2000:]}")


def _bin_dir() -> Path:
    found = shutil.which("initdb") or max(
        (str(path) for path in Path("/usr/lib/postgresql").glob("*/bin/initdb")), default=None
    )
    if found is None:
        raise BenchFailure("initdb not found: install PostgreSQL (scripts/system-deps.sh does)")
    return Path(found).parent


def _run_as() -> list[str]:
    """The prefix that runs PostgreSQL's tools as the `postgres` user when we are root."""
    if os.geteuid() != 0:
        return []
    if subprocess.run(["id", "postgres"], capture_output=True, check=False).returncode != 0:
        check(["useradd", "--system", "--no-create-home", "postgres"], "useradd postgres")
    return ["runuser", "-u", "postgres", "--"]


class PrivatePostgres:
    """A private server on 127.0.0.1, started on `with` and stopped with `-m immediate` after.

    `settings` become `-c name=value` server options, e.g. {"fsync": "off"}.
    """

    def __init__(self, settings: Mapping[str, str], *, prefix: str = "snapshotd-bench-pg-") -> None:
        self.settings = dict(settings)
        self.bin = _bin_dir()
        self.run_as = _run_as()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix=prefix))
        self.data = self.root / "data"

    @property
    def server_url(self) -> str:
        """The server's URL without a database name."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The URL of the `postgres` database that initdb creates."""
        return f"{self.server_url}/postgres"

    def create_database(self, name: str) -> str:
        """A new, empty database on this server: its URL."""
        admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return f"{self.server_url}/{name}"

    def version(self) -> str:
        answer = subprocess.run(
            [str(self.bin / "postgres"), "--version"], capture_output=True, text=True, check=False
        )
        return (answer.stdout.split() + ["?"] * 3)[2]  # "postgres (PostgreSQL) 15.8 (Debian …)"

    def postmaster(self) -> int:
        """The pid of the server's main process."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def _run(self, program: str, *args: str) -> None:
        command = [*self.run_as, str(self.bin / program), "-D", str(self.data), *args]
        check(command, f"PostgreSQL's {program}")

    def __enter__(self) -> PrivatePostgres:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        options += "".join(f" -c {name}={value}" for name, value in self.settings.items())
        try:
            self.root.chmod(0o755)
            if self.run_as:
                shutil.chown(self.root, "postgres")
            self._run("initdb", "-U", "postgres", "-A", "trust", "--no-sync")
            self._run("pg_ctl", "-l", str(self.root / "log"), "-w", "-o", options, "start")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        with suppress(BenchFailure, subprocess.SubprocessError, OSError):
            self._run("pg_ctl", "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
