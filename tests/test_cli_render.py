"""`snapshotd render-key` and `render-url` as a user runs them: real processes over a real
database, and the printed link opened on a real `snapshotd serve` with Chromium."""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from PIL import Image

from snapshotd.services.render_keys import REMEMBER_SECONDS
from tests.pages import PageServer
from tests.test_cli import Processes, run, start_server


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The test's own database, and none of the render key variables of whoever runs it."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith("SNAPSHOTD_RENDER_")}
    return {
        **kept,
        "SNAPSHOTD_DATA_DIR": str(tmp_path / "data"),
        "SNAPSHOTD_EGRESS_ALLOW": "127.0.0.1/32",
        "SNAPSHOTD_POLL_INTERVAL_SECONDS": "0.1",
    }


@pytest.fixture
def processes() -> Iterator[Processes]:
    started = Processes()
    yield started
    started.stop_all()


def create_key(env: dict[str, str], *args: str) -> tuple[str, str]:
    made = run(env, "render-key", "create", "--org", "acme", *args)
    assert made.returncode == 0, made.stderr
    lines = dict(line.split("\t") for line in made.stdout.splitlines())
    assert list(lines) == ["id", "secret"] and "not shown again" in made.stderr
    return lines["id"], lines["secret"]


def test_render_keys_are_created_listed_and_revoked_without_their_secret(
    env: dict[str, str],
) -> None:
    assert run(env, "org", "create", "acme").returncode == 0
    blog, secret = create_key(env, "--name", "blog", "--rate-limit", "10/60")
    shop, _ = create_key(env)
    assert blog.startswith("rk_") and secret.startswith("rks_")

    listed = run(env, "render-key", "list", "--org", "acme")
    assert listed.returncode == 0 and secret not in listed.stdout
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert [row[0] for row in rows] == [blog, shop]
    assert rows[0][1:3] == ["blog", "live"] and rows[0][4:] == ["never", "10/60"]
    assert rows[1][1:3] == ["", "live"] and rows[1][5] == "default"
    assert time.strptime(rows[0][3], "%Y-%m-%d %H:%M:%S")

    revoked = run(env, "render-key", "revoke", blog, "--org", "acme")
    assert revoked.returncode == 0 and blog in revoked.stderr
    after = run(env, "render-key", "list", "--org", "acme").stdout.splitlines()
    assert [line.split("\t")[2] for line in after] == ["revoked", "live"]

    assert run(env, "org", "create", "globex").returncode == 0
    elsewhere = run(env, "render-key", "revoke", shop, "--org", "globex")
    assert elsewhere.returncode == 1 and "no render key" in elsewhere.stderr
    bad = run(env, "render-key", "create", "--org", "acme", "--rate-limit", "lots")
    assert bad.returncode == 1 and "COUNT/SECONDS" in bad.stderr and bad.stdout == ""
    missing = run(env, "render-key", "list", "--org", "nobody")
    assert missing.returncode == 1 and "nobody" in missing.stderr

    log = run(env, "audit", "--org", "acme").stdout
    assert "operator\tcreated\trender_key" in log and "operator\trevoked\trender_key" in log
    assert secret not in log


def test_render_url_is_signed_with_the_key_and_refuses_what_the_server_would(
    env: dict[str, str],
) -> None:
    env = {**env, "SNAPSHOTD_SERVER": "https://snap.example/", "SNAPSHOTD_RENDER_SECRET": "rks_s"}
    done = run(
        env,
        "render-url",
        "https://example.org/?a=1&b=2",
        "--key-id",
        "rk_1",
        "--format",
        "webp",
        "--width",
        "640",
        "--full-page",
        "--geolocation",
        "48.85,2.35",
        "--cache-ttl",
        "60",
        "--expires-in",
        "600",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1
    link = urlsplit(done.stdout.strip())
    assert (link.scheme, link.netloc, link.path) == ("https", "snap.example", "/render/rk_1/webp")
    signed, _, given = link.query.rpartition("&signature=")
    assert given == hmac.new(b"rks_s", signed.encode(), hashlib.sha256).hexdigest()
    fields = dict(parse_qsl(signed))
    expires = int(fields.pop("expires"))
    assert time.time() + 590 < expires <= time.time() + 600
    assert fields == {
        "url": "https://example.org/?a=1&b=2",
        "width": "640",
        "full_page": "true",
        "geolocation": "48.85,2.35",
        "cache_ttl": "60",
    }

    for args, reason in (
        (("--width", "50"), "width"),
        (("--format", "gif"), "format"),
        (("--geolocation", "95,0"), "latitude"),
    ):
        refused = run(env, "render-url", "https://example.org/", "--key-id", "rk_1", *args)
        assert refused.returncode == 2 and reason in refused.stderr and refused.stdout == ""
    no_secret = {**env, "SNAPSHOTD_RENDER_SECRET": ""}
    refused = run(no_secret, "render-url", "https://example.org/", "--key-id", "rk_1")
    assert refused.returncode == 2 and "SNAPSHOTD_RENDER_SECRET" in refused.stderr
    no_server = {**env, "SNAPSHOTD_SERVER": ""}
    refused = run(no_server, "render-url", "https://example.org/", "--key-id", "rk_1")
    assert refused.returncode == 2 and "SNAPSHOTD_SERVER" in refused.stderr


def test_a_printed_link_shows_the_page_until_its_key_is_revoked(
    env: dict[str, str], pages: PageServer, processes: Processes
) -> None:
    _, base, _ = start_server(env, processes)
    key_id, secret = create_key(env, "--name", "docs")
    printed = run(
        {**env, "SNAPSHOTD_SERVER": base, "SNAPSHOTD_RENDER_SECRET": secret},
        "render-url",
        pages.url + "/",
        "--key-id",
        key_id,
        "--width",
        "640",
        "--height",
        "400",
        "--expires-in",
        "600",
    )
    assert printed.returncode == 0, printed.stderr
    link = printed.stdout.strip()
    shown = httpx.get(link, timeout=60)
    assert shown.status_code == 200, shown.text
    assert Image.open(io.BytesIO(shown.content)).size == (640, 400)
    assert httpx.get(link.replace("width=640", "width=641"), timeout=60).status_code == 403
    [used] = run(env, "render-key", "list", "--org", "acme").stdout.splitlines()
    assert used.split("\t")[4] != "never"

    assert run(env, "render-key", "revoke", key_id, "--org", "acme").returncode == 0
    time.sleep(REMEMBER_SECONDS + 0.5)
    assert httpx.get(link, timeout=60).status_code == 403
