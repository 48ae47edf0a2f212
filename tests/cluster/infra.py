"""The stores under a cluster: PostgreSQL and SeaweedFS's S3 gateway, private or shared.

A private server is for a test that stops, crashes or restarts it; the shared ones that
scripts/test.sh starts are cheaper, and each test gets a fresh database or key prefix on them.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

import pytest
from sqlalchemy import create_engine, text

from tests.cluster.processes import free_port, stop_group, tail, wait_for

S3_ACCESS_KEY = "snapshotd-test"
S3_SECRET_KEY = "snapshotd-test-secret"
SHARED_BUCKET = "snapshotd-test"


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
        pytest.skip("PostgreSQL tests run under `make test`, which starts a server")
    name = f"t_{secrets.token_hex(6)}"
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
    wait_for("the shared S3 gateway", location.answers, 90, 0.5)  # it may still be starting
    return location


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
        wait_for("SeaweedFS S3 gateway", lambda: self._answers(probe), 90, 0.5)

    def _answers(self, probe: S3Location) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"SeaweedFS exited:\n{tail(self.dir / 'log')}")
        return probe.answers()

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process, timeout=1)  # its graceful stop is slow and not needed
            self.process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
