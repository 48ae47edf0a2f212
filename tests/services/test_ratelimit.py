"""Snapshot-creation limits counted in the database: exact under concurrency, on SQLite and
PostgreSQL, and shared by separate API processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from snapshotd.config import Settings
from snapshotd.errors import BadRequest, RateLimited, TooManyRequests
from snapshotd.services.accounts import Accounts, ensure_org
from snapshotd.services.capture_request import CaptureRequest
from snapshotd.services.graph import make_queue
from snapshotd.services.org_settings import OrgSettings
from snapshotd.services.ratelimit import CreationLimits, Limit
from snapshotd.services.snapshots import Snapshots
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from snapshotd.store.models import RateEvent, utcnow

SNAPSHOTD = str(Path(sys.executable).with_name("snapshotd"))
PAGE = CaptureRequest(url="https://example.org")


def org(db: Database, slug: str) -> str:
    with db.session() as session:
        return ensure_org(session, slug).id


def service(settings: Settings, db: Database, **limits: str) -> Snapshots:
    tuned = settings.model_copy(update={"rate_limits": limits})
    return Snapshots(tuned, db, make_queue(tuned, db), FileBlobStore(settings.blobs_dir))


def attempt(snapshots: Snapshots, org_id: str, surface: str = "native") -> str:
    try:
        snapshots.create_page(org_id, PAGE, surface=surface)
        return "created"
    except RateLimited as error:
        assert error.retry_after is not None and 1 <= error.retry_after <= 300
        return "limited"


def test_concurrent_creations_never_slip_past_the_limit(
    settings: Settings, any_db: Database
) -> None:
    snapshots = service(settings, any_db, native="5/300")
    acme, rival = org(any_db, "acme"), org(any_db, "rival")
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(lambda _: attempt(snapshots, acme), range(24)))
    assert outcomes.count("created") == 5 and outcomes.count("limited") == 19
    assert [attempt(snapshots, rival) for _ in range(6)].count("created") == 5


def test_the_window_slides(settings: Settings, any_db: Database) -> None:
    snapshots = service(settings, any_db, native="2/60")
    acme = org(any_db, "acme")
    assert [attempt(snapshots, acme) for _ in range(3)] == ["created", "created", "limited"]
    with any_db.session() as session:
        session.execute(update(RateEvent).values(at=utcnow() - timedelta(seconds=61)))
    assert attempt(snapshots, acme) == "created"


def test_surfaces_have_their_own_buckets_and_the_seeds_defaults(
    settings: Settings, any_db: Database
) -> None:
    limits = CreationLimits({})
    assert limits.limit_for(None, "thousandeyes_v7") == Limit(5, 300)
    assert limits.limit_for(None, "thousandeyes_v6") == Limit(10, 3600)
    assert limits.limit_for(None, "clickwrap") == limits.limit_for(None, "native")
    snapshots = service(settings, any_db, native="1/60")
    acme = org(any_db, "acme")
    v7 = [attempt(snapshots, acme, "thousandeyes_v7") for _ in range(6)]
    assert v7 == ["created"] * 5 + ["limited"]
    assert [attempt(snapshots, acme) for _ in range(2)] == ["created", "limited"]


def test_an_organization_override_wins_and_zero_means_unlimited(
    settings: Settings, any_db: Database
) -> None:
    snapshots = service(settings, any_db, native="1/60")
    acme = org(any_db, "acme")
    OrgSettings(any_db).set_rate_limits(acme, {"native": "3/60"}, actor="operator")
    assert [attempt(snapshots, acme) for _ in range(4)].count("created") == 3
    OrgSettings(any_db).set_rate_limits(acme, {"native": "0"}, actor="operator")
    assert [attempt(snapshots, acme) for _ in range(5)] == ["created"] * 5
    with pytest.raises(BadRequest):
        OrgSettings(any_db).set_rate_limits(acme, {"native": "lots"}, actor="operator")


def test_a_refused_creation_counts_nothing(settings: Settings, any_db: Database) -> None:
    snapshots = service(settings, any_db, native="1/60")
    acme = org(any_db, "acme")
    with pytest.raises(BadRequest):
        snapshots.create_page(acme, CaptureRequest(url="http://10.0.0.1/"))
    assert attempt(snapshots, acme) == "created"


# -- two API processes ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def two_servers(settings: Settings, any_db: Database) -> Iterator[list[str]]:
    env = {
        **os.environ,
        "SNAPSHOTD_DATA_DIR": str(settings.data_dir),
        "SNAPSHOTD_DATABASE_URL": any_db.engine.url.render_as_string(hide_password=False),
        "SNAPSHOTD_RATE_LIMITS": "native=5/300",
    }
    ports = [free_port(), free_port()]
    servers = [
        subprocess.Popen(
            [SNAPSHOTD, "serve", "--workers", "0", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        deadline = time.monotonic() + 60
        for url in urls:
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        yield urls
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=30)


def test_two_api_processes_share_one_exact_count(two_servers: list[str], any_db: Database) -> None:
    acme = Accounts(any_db).create_token(org="acme", email="ops@acme.test", role="admin")
    rival = Accounts(any_db).create_token(org="rival", email="ops@rival.test", role="admin")

    def post(index: int, token: str = acme) -> httpx.Response:
        return httpx.post(
            f"{two_servers[index % 2]}/api/v1/snapshots",
            headers={"Authorization": f"Bearer {token}"},
            json={"url": "https://example.org"},
            timeout=30,
        )

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(post, range(12)))
    codes = sorted(response.status_code for response in answers)
    assert codes == [202] * 5 + [429] * 7
    served_by = {index % 2 for index, r in enumerate(answers) if r.status_code == 429}
    assert served_by == {0, 1}
    refused = next(r for r in answers if r.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["ratelimit-policy"] == '"native";q=5;w=300'
    assert refused.headers["content-type"] == "application/problem+json"
    assert [post(i, rival).status_code for i in range(2)] == [202, 202]


def test_limit_parsing() -> None:
    assert Limit.parse("5/300") == Limit(5, 300)
    assert Limit.parse("0") is None and Limit.parse("off") is None
    for bad in ("5", "x/1", "5/0", "0/10"):
        with pytest.raises(BadRequest):
            Limit.parse(bad)
    assert issubclass(RateLimited, TooManyRequests)
