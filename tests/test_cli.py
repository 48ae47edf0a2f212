"""The `snapshotd` command as a user runs it: real processes, real signals."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from snapshotd.services.principals import REMEMBER_SECONDS
from snapshotd.store.db import Database
from snapshotd.store.models import Job
from tests.pages import PageServer

SNAPSHOTD = str(Path(sys.executable).with_name("snapshotd"))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SNAPSHOTD_DATA_DIR": str(tmp_path / "data"),
        "SNAPSHOTD_EGRESS_ALLOW": "127.0.0.1/32",
        "SNAPSHOTD_JOB_LEASE_SECONDS": "5",
        "SNAPSHOTD_POLL_INTERVAL_SECONDS": "0.1",
    }


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SNAPSHOTD, *args], env=env, capture_output=True, text=True, timeout=120)


def token_for(env: dict[str, str]) -> str:
    done = run(
        env, "token", "create", "--org", "acme", "--email", "ops@acme.test", "--role", "admin"
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


class Processes:
    def __init__(self) -> None:
        self.running: list[subprocess.Popen[bytes]] = []

    def start(
        self, env: dict[str, str], *args: str, log: Path | None = None
    ) -> subprocess.Popen[bytes]:
        output = log.open("wb") if log else subprocess.DEVNULL
        process = subprocess.Popen(
            [SNAPSHOTD, *args],
            env=env,
            start_new_session=True,
            stdout=output,
            stderr=output,
        )
        if log:
            output.close()  # the child has its own copy
        self.running.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


@pytest.fixture
def processes() -> Iterator[Processes]:
    started = Processes()
    yield started
    started.stop_all()


def test_token_create_prints_only_the_token(env: dict[str, str]) -> None:
    done = run(
        env, "token", "create", "--org", "acme", "--email", "ops@acme.test", "--role", "admin"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1 and done.stdout.startswith("snap_")
    assert len(done.stdout.strip()) >= 43
    bad = run(
        env, "token", "create", "--org", "acme", "--email", "ops@acme.test", "--role", "emperor"
    )
    assert bad.returncode == 1 and "role" in bad.stderr and bad.stdout == ""


def test_migrate_is_repeatable(env: dict[str, str]) -> None:
    assert run(env, "migrate").returncode == 0
    assert run(env, "migrate").returncode == 0
    rebuilt = run(env, "rebuild-rollups")
    assert (rebuilt.returncode, rebuilt.stdout) == (0, "rebuilt 0 roll-up rows\n"), rebuilt.stderr


def test_one_shot_capture_needs_no_server(
    env: dict[str, str], pages: PageServer, tmp_path: Path
) -> None:
    shot = tmp_path / "shot.png"
    done = run(
        env, "capture", pages.url + "/tall", "-o", str(shot), "--full-page", "--width", "600"
    )
    assert done.returncode == 0, done.stderr
    with Image.open(shot) as image:
        assert image.size == (600, 16384)
    jpeg = tmp_path / "shot.jpg"
    assert run(env, "capture", pages.url + "/", "-o", str(jpeg)).returncode == 0
    with Image.open(jpeg) as image:
        assert image.format == "JPEG"
    refused = run(env, "capture", "file:///etc/passwd", "-o", str(tmp_path / "x.png"))
    assert refused.returncode == 1 and "http" in refused.stderr
    assert not (tmp_path / "x.png").exists()


def test_one_shot_capture_takes_the_real_world_page_options(
    env: dict[str, str], pages: PageServer, tmp_path: Path
) -> None:
    shot = tmp_path / "told.png"
    told = run(
        env,
        "capture",
        pages.url + "/",
        "-o",
        str(shot),
        "--timezone",
        "Asia/Tokyo",
        "--locale",
        "ja-JP",
        "--geolocation",
        "35.68,139.69",
        "--freeze-animations",
        "--media",
        "print",
    )
    assert told.returncode == 0, told.stderr
    assert shot.exists()
    missing = tmp_path / "missing.png"
    failed = run(
        env, "capture", pages.url + "/missing", "-o", str(missing), "--fail-on-status", "404"
    )
    assert failed.returncode == 1 and "HTTP 404" in failed.stderr
    assert missing.exists()  # kept as evidence of what the page showed
    refused = run(
        env, "capture", pages.url + "/", "-o", str(tmp_path / "x.png"), "--timezone", "Nowhere"
    )
    assert refused.returncode == 1 and "timezone" in refused.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(base: str, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("server did not become ready")


def start_server(
    env: dict[str, str], processes: Processes, *args: str
) -> tuple[subprocess.Popen[bytes], str, dict[str, str]]:
    """`snapshotd serve` on a free port, ready, with an admin token's headers."""
    token = token_for(env)
    port = free_port()
    server = processes.start(env, "serve", "--port", str(port), *args)
    base = f"http://127.0.0.1:{port}"
    wait_ready(base)
    return server, base, {"Authorization": f"Bearer {token}"}


def test_serve_readme_flow(env: dict[str, str], pages: PageServer, processes: Processes) -> None:
    _, base, headers = start_server(env, processes)
    created = httpx.post(
        base + "/api/v1/snapshots",
        headers=headers,
        json={"url": pages.url + "/", "width": 1280, "height": 800},
    )
    # The in-process worker may have started it by the time the answer is written.
    assert created.status_code == 202 and created.json()["status"] in ("queued", "working")
    location = base + created.headers["location"]
    deadline = time.monotonic() + 60
    while (body := httpx.get(location, headers=headers).json())["status"] not in (
        "success",
        "failed",
    ):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert body["status"] == "success", body["status_message"]
    image = httpx.get(location + "/image", headers=headers)
    assert Image.open(io.BytesIO(image.content)).size == (1280, 800)


def serving_pid(connection: socket.socket, candidates: list[int]) -> int | None:
    """Which of `candidates` holds the server side of `connection`, read from /proc."""
    client_port, server_port = connection.getsockname()[1], connection.getpeername()[1]
    inodes = {
        fields[9]
        for fields in (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
        if int(fields[1].rsplit(":", 1)[1], 16) == server_port
        and int(fields[2].rsplit(":", 1)[1], 16) == client_port
    }
    for pid in candidates:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) in {f"socket:[{inode}]" for inode in inodes}:
                    return pid
    return None


def test_serve_processes_share_the_port_and_the_parent_runs_the_workers(
    env: dict[str, str], pages: PageServer, processes: Processes, tmp_path: Path
) -> None:
    log = tmp_path / "serve.log"
    token = token_for(env)
    port = free_port()
    server = processes.start(env, "serve", "--port", str(port), "--processes", "2", log=log)
    base = f"http://127.0.0.1:{port}"
    wait_ready(base, limit=120)
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    # Besides the two API processes, multiprocessing keeps a resource tracker.
    api = [int(pid) for pid in children if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]
    assert len(api) == 2
    served: set[int | None] = set()
    held = []
    request = b"GET /api/v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token.encode()
    for _ in range(200):
        connection = socket.create_connection(("127.0.0.1", port), timeout=10)
        held.append(connection)  # kept open, so the serving process still holds its socket
        connection.sendall(request + b"\r\n\r\n")
        assert connection.recv(64).startswith(b"HTTP/1.1 200")
        served.add(serving_pid(connection, api))
        if served == set(api):
            break
    for connection in held:
        connection.close()
    assert served == set(api)
    # The default in-process worker runs in the parent and captures what the API processes queue.
    headers = {"Authorization": f"Bearer {token}"}
    created = httpx.post(
        base + "/api/v1/snapshots",
        headers=headers,
        json={"url": pages.url + "/", "evidence": False},
    )
    assert created.status_code == 202
    location = base + created.headers["location"]
    deadline = time.monotonic() + 90
    while (body := httpx.get(location, headers=headers).json())["status"] not in (
        "success",
        "failed",
    ):
        assert time.monotonic() < deadline, body
        time.sleep(0.2)
    assert body["status"] == "success", body["status_message"]
    # The API processes redact their access log too.
    for _ in range(4):
        httpx.get(f"{base}/create_snap", params={"url": "file:///etc/passwd", "token": token})
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=60) == 0
    assert all(not Path(f"/proc/{pid}").exists() for pid in api)
    written = log.read_text()
    assert "token=[redacted]" in written and token not in written


def test_a_revoked_token_stops_working_on_every_process_within_the_bound(
    env: dict[str, str], processes: Processes
) -> None:
    """API processes remember a principal for REMEMBER_SECONDS; revocation must hold after that."""
    env["SNAPSHOTD_SHARE_MISSES_PER_MINUTE"] = "0"  # the 401s below are expected, not an attack
    _, base, headers = start_server(env, processes, "--processes", "2", "--workers", "0")
    for _ in range(20):  # fresh connections, so both processes remember the principal
        assert httpx.get(base + "/api/v1/me", headers=headers).status_code == 200
    listed = run(env, "token", "list", "--org", "acme").stdout
    token_id = next(line.split("\t")[0] for line in listed.splitlines() if "ops@acme.test" in line)
    assert run(env, "token", "revoke", token_id, "--org", "acme").returncode == 0
    revoked = time.monotonic()
    answers = []
    while time.monotonic() < revoked + REMEMBER_SECONDS + 1:
        answers.append((time.monotonic(), httpx.get(base + "/api/v1/me", headers=headers)))
    late = [
        (round(at - revoked, 2), answer.status_code)
        for at, answer in answers
        if at > revoked + REMEMBER_SECONDS and answer.status_code != 401
    ]
    assert not late
    assert all(
        httpx.get(base + "/api/v1/me", headers=headers).status_code == 401 for _ in range(20)
    )


def wait_until_claimed(db: Database, job_id: str, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while True:
        with db.session() as session:
            job = session.get(Job, job_id)
            if job is not None and job.state == "working":
                return
        assert time.monotonic() < deadline, "no worker claimed the job"
        time.sleep(0.05)


def test_sigkill_mid_capture_is_retried_by_another_worker(
    env: dict[str, str], pages: PageServer, processes: Processes
) -> None:
    _, base, headers = start_server(env, processes, "--workers", "0")
    doomed = processes.start(env, "worker")
    created = httpx.post(
        base + "/api/v1/snapshots",
        headers=headers,
        json={"url": pages.url + "/slow?s=4", "evidence": False},
    ).json()
    db = Database.from_url(f"sqlite:///{env['SNAPSHOTD_DATA_DIR']}/snapshotd.db")
    try:
        wait_until_claimed(db, created["job_id"])
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=10)
        processes.start(env, "worker")
        deadline = time.monotonic() + 60
        while (
            body := httpx.get(f"{base}/api/v1/snapshots/{created['id']}", headers=headers).json()
        )["status"] not in ("success", "failed"):
            assert time.monotonic() < deadline, body
            time.sleep(0.2)
    finally:
        db.dispose()
    assert body["status"] == "success", body["status_message"]
    assert body["job"]["attempts"] == 2


def test_sigterm_lets_in_flight_captures_finish(
    env: dict[str, str], pages: PageServer, processes: Processes
) -> None:
    server, base, headers = start_server(env, processes)
    created = httpx.post(
        base + "/api/v1/snapshots",
        headers=headers,
        json={"url": pages.url + "/slow?s=2", "evidence": False},
    ).json()
    db = Database.from_url(f"sqlite:///{env['SNAPSHOTD_DATA_DIR']}/snapshotd.db")
    try:
        wait_until_claimed(db, created["job_id"])
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        with db.session() as session:
            job = session.get(Job, created["job_id"])
            assert job is not None and job.state == "complete" and job.attempts == 1
    finally:
        db.dispose()


# -- accounts from the command line -----------------------------------------------------------


def test_org_user_token_group_commands(env: dict[str, str]) -> None:
    assert run(env, "org", "create", "acme", "--name", "Acme Inc").returncode == 0
    user = run(
        env, "user", "create", "--org", "acme", "--email", "ci@acme.test", "--role", "uploader"
    )
    assert user.returncode == 0 and user.stdout.startswith("usr_")
    duplicate = run(env, "user", "create", "--org", "acme", "--email", "CI@acme.test")
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr
    made = run(
        env,
        "token",
        "create",
        "--org",
        "acme",
        "--email",
        "ci@acme.test",
        "--role",
        "uploader",
        "--name",
        "ci",
        "--expires-in-days",
        "7",
    )
    assert made.returncode == 0
    secret = made.stdout.strip()
    listed = run(env, "token", "list", "--org", "acme")
    assert listed.returncode == 0 and secret not in listed.stdout
    token_id, state, email, role, name, _ = listed.stdout.splitlines()[0].split("\t")
    assert (state, email, role, name) == ("active", "ci@acme.test", "uploader", "ci")
    assert run(env, "token", "revoke", token_id, "--org", "acme").returncode == 0
    assert "\trevoked\t" in run(env, "token", "list", "--org", "acme").stdout
    assert run(env, "token", "revoke", token_id, "--org", "other").returncode == 1
    aid = run(env, "group", "create", "--org", "acme", "--name", "Ops").stdout.strip()
    assert aid.isdigit()
    assert (
        run(
            env, "group", "add", "--org", "acme", "--aid", aid, "--email", "ci@acme.test"
        ).returncode
        == 0
    )
    assert (
        run(
            env, "org", "set", "acme", "--rate-limit", "native=2/60", "--retention", "page=7"
        ).returncode
        == 0
    )
    assert run(env, "org", "set", "acme", "--rate-limit", "native=lots").returncode == 1
    # Both are checked before either is saved: a wrong limit leaves the retention as it was.
    mixed = ("--retention", "page=30", "--rate-limit", "nativ=5/60")
    assert run(env, "org", "set", "acme", *mixed).returncode == 1
    assert run(env, "org", "set", "acme", "--cache-ttl", "3600").returncode == 0
    assert run(env, "org", "set", "acme", "--cache-ttl", "soon").returncode == 1
    log = run(env, "audit", "--org", "acme").stdout
    assert "page': 30" not in log and '"page": 30' not in log
    assert "cache_ttl" in log and "3600" in log
    for action in (
        "created\ttoken",
        "revoked\ttoken",
        "created\taccount_group",
        "added\taccount_group",
    ):
        assert action in log
    assert secret not in log
    swept = run(env, "sweep")
    assert swept.returncode == 0 and "deleted 0 snapshots" in swept.stdout


def test_tokens_never_reach_the_logs_or_the_database_file(
    env: dict[str, str], processes: Processes, tmp_path: Path
) -> None:
    token = token_for(env)
    log = tmp_path / "serve.log"
    port = free_port()
    processes.start(env, "serve", "--port", str(port), "--workers", "0", log=log)
    base = f"http://127.0.0.1:{port}"
    wait_ready(base)
    headers = {"Authorization": f"Bearer {token}"}
    created = httpx.post(
        base + "/api/v1/snapshots", headers=headers, json={"url": "https://example.org"}
    )
    assert created.status_code == 202
    share = httpx.post(f"{base}/api/v1/snapshots/{created.json()['id']}/shares", headers=headers)
    share_id = share.json()["id"]
    assert httpx.get(f"{base}/s/{share_id}").status_code == 200
    assert httpx.get(base + "/api/v1/me", auth=("ops@acme.test", token)).status_code == 200
    # Kasisto takes the token in the query string; the access log must not keep it.
    refused = httpx.get(f"{base}/create_snap", params={"url": "file:///etc/passwd", "token": token})
    assert refused.status_code == 400
    assert (
        httpx.get(base + "/api/v1/me", headers={"Authorization": "Bearer snap_wrong"}).status_code
        == 401
    )
    time.sleep(0.5)
    written = log.read_text()
    assert "/create_snap?" in written and "token=[redacted]" in written
    assert f"/s/{share_id[:6]}" in written
    data = Path(env["SNAPSHOTD_DATA_DIR"])
    stored = b"".join(path.read_bytes() for path in data.glob("snapshotd.db*"))
    assert stored
    for secret in (token, token.removeprefix("snap_"), share_id):
        assert secret not in written
    assert token.encode() not in stored and token.removeprefix("snap_").encode() not in stored


def test_a_chosen_signing_key_must_exist_and_keygen_makes_one(
    env: dict[str, str], tmp_path: Path
) -> None:
    key = tmp_path / "keys" / "manifest.pem"
    env = {**env, "SNAPSHOTD_MANIFEST_KEY_FILE": str(key)}
    for command in ("worker", "serve"):
        refused = run(env, command)
        assert refused.returncode == 1 and "snapshotd keygen" in refused.stderr
        assert not key.exists()  # nothing was created in its place
    made = run(env, "keygen", str(key))
    assert made.returncode == 0 and key.stat().st_mode & 0o777 == 0o600
    pem = key.read_bytes()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    again = run(env, "keygen", str(key))
    assert again.returncode == 1 and "already exists" in again.stderr
    assert key.read_bytes() == pem
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    unwritable = run(env, "keygen", str(blocker / "manifest.pem"))
    assert unwritable.returncode == 1
    assert unwritable.stderr.startswith(f"error: cannot write {blocker / 'manifest.pem'}: ")
    assert unwritable.stderr.count("\n") == 1


def test_the_access_log_can_be_turned_off(
    env: dict[str, str], processes: Processes, tmp_path: Path
) -> None:
    log = tmp_path / "serve.log"
    port = free_port()
    quiet = {**env, "SNAPSHOTD_ACCESS_LOG": "false"}
    processes.start(quiet, "serve", "--port", str(port), "--workers", "0", log=log)
    base = f"http://127.0.0.1:{port}"
    wait_ready(base)
    assert httpx.get(base + "/api/v1/snapshots/snp_nowhere").status_code == 401
    time.sleep(0.5)
    written = log.read_text()
    assert "Uvicorn running" in written and "snp_nowhere" not in written


def test_a_worker_metrics_address_it_cannot_serve_on_is_refused(env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        refused = run({**env, "SNAPSHOTD_WORKER_METRICS_ADDRESS": address}, "worker")
    assert refused.returncode == 1
    assert f"cannot serve metrics on {address}" in refused.stderr
    malformed = run({**env, "SNAPSHOTD_WORKER_METRICS_ADDRESS": "9101"}, "worker")
    assert malformed.returncode == 1 and "Traceback" not in malformed.stderr
    assert "error: SNAPSHOTD_WORKER_METRICS_ADDRESS: give HOST:PORT" in malformed.stderr


# -- wrong settings ----------------------------------------------------------------------------


def refused_in_one_line(done: subprocess.CompletedProcess[str], variable: str) -> None:
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"error: {variable}: ")


def test_a_rate_limit_serve_cannot_use_is_refused_in_one_line(env: dict[str, str]) -> None:
    done = run({**env, "SNAPSHOTD_RATE_LIMITS": "native=5/0"}, "serve", "--port", str(free_port()))
    refused_in_one_line(done, "SNAPSHOTD_RATE_LIMITS")
    assert "native" in done.stderr and "5/0" in done.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SNAPSHOTD_RATE_LIMITS", "native=0/60"),
        ("SNAPSHOTD_RETENTION_DAYS", "page=0"),
        ("SNAPSHOTD_EGRESS_ALLOW", "10.0.0.0/33"),
        ("SNAPSHOTD_WORKER_METRICS_ADDRESS", "localhost"),
        ("SNAPSHOTD_DATABASE_URL", "mysql://db/snapshotd"),
        ("SNAPSHOTD_BASE_URL", "snap.example"),
        ("SNAPSHOTD_WORKERS", "-1"),
    ],
)
def test_serve_refuses_a_wrong_value_in_one_line(
    env: dict[str, str], variable: str, value: str
) -> None:
    done = run({**env, variable: value}, "serve", "--processes", "2", "--port", str(free_port()))
    refused_in_one_line(done, variable)


@pytest.mark.parametrize(
    "command",
    [
        ["worker"],
        ["capture", "http://127.0.0.1:9/", "-o", "{tmp}/page.png"],
        ["token", "create", "--org", "acme", "--email", "ops@acme.test"],
        ["migrate"],
        ["rebuild-rollups"],
        ["sweep"],
        ["org", "create", "acme"],
        ["audit", "--org", "acme"],
    ],
)
def test_every_command_refuses_a_wrong_value_in_one_line(
    env: dict[str, str], tmp_path: Path, command: list[str]
) -> None:
    wrong = {**env, "SNAPSHOTD_RATE_LIMITS": "native=5/0"}
    done = run(wrong, *(part.format(tmp=tmp_path) for part in command))
    refused_in_one_line(done, "SNAPSHOTD_RATE_LIMITS")
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    "command",
    [
        ["migrate"],
        ["sweep"],
        ["rebuild-rollups"],
        ["org", "create", "acme"],
        ["token", "create", "--org", "acme", "--email", "ops@acme.test"],
    ],
)
def test_a_database_that_cannot_be_reached_is_said_in_one_line(
    env: dict[str, str], command: list[str]
) -> None:
    closed = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/snapshotd"
    done = run({**env, "SNAPSHOTD_DATABASE_URL": closed}, *command)
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: the database is unreachable (")


def test_a_data_folder_that_cannot_be_made_is_said_in_one_line(
    env: dict[str, str], tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    done = run({**env, "SNAPSHOTD_DATA_DIR": str(blocker / "data")}, "org", "create", "acme")
    assert done.returncode == 1, done.stderr
    assert done.stderr == f"error: Not a directory: {blocker / 'data'}\n"


def test_verify_names_a_bundle_or_key_it_cannot_read(env: dict[str, str], tmp_path: Path) -> None:
    missing, garbage = tmp_path / "missing.zip", tmp_path / "garbage.zip"
    garbage.write_bytes(b"not a zip")
    done = run(env, "verify", str(missing), str(garbage))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout.splitlines() == [
        f"{missing}: FAILED",
        "  cannot be read: No such file or directory",
        f"{garbage}: FAILED",
        "  not a snapshotd bundle: File is not a zip file",
    ]
    done = run(env, "verify", str(garbage), "--key", str(garbage))
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"error: --key {garbage}: ")


@pytest.mark.parametrize("command", [["ls"], ["render-url", "https://example.org"]])
def test_a_server_that_is_not_an_http_url_is_a_usage_error(
    env: dict[str, str], command: list[str]
) -> None:
    given = {**env, "SNAPSHOTD_TOKEN": "x", "SNAPSHOTD_RENDER_KEY_ID": "k"}
    given["SNAPSHOTD_RENDER_SECRET"] = "s"
    done = run(given, *command, "--server", "snap.example:8000")
    assert done.returncode == 2
    assert done.stderr == "error: --server 'snap.example:8000' is not an http:// or https:// URL\n"


def test_an_organization_limit_the_server_cannot_use_is_refused(env: dict[str, str]) -> None:
    assert run(env, "org", "create", "acme").returncode == 0
    done = run(env, "org", "set", "acme", "--rate-limit", "native=5/0")
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("error: native: rate limit '5/0' is out of range")
