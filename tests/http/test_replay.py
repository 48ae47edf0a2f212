"""Replay over HTTP: byte ranges on artifact downloads (the viewer reads a WACZ by ranges), the
replay host and what it serves, the signed archive links, the main origin's replay pages that
frame the viewer, and who may open them. The viewer itself runs in Chromium in
tests/console/test_replay.py."""

from __future__ import annotations

import hashlib
import html
import re
import secrets
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError

from snapshotd.config import DEFAULT_REPLAY_VIEWER_DIR, Settings
from snapshotd.http import replay
from snapshotd.http.app import create_app
from snapshotd.services.accounts import Accounts
from snapshotd.services.downloads import Downloads
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from snapshotd.store.models import Artifact, Share, Snapshot, utcnow
from tests.console.conftest import ADMIN, add_snapshot, org_id_of, sign_in
from tests.wacz import add_archive, share_of

URL = "https://news.example.org/figures"
HTML = "<html><body><h1>Figures</h1></body></html>"


REPLAY = "http://replay.test"


@pytest.fixture
def app(settings: Settings, db: Database, blobs: FileBlobStore) -> FastAPI:
    """The app with a replay host: the main origin is http://testserver, the replay host
    http://replay.test, both this one app."""
    return create_app(settings.model_copy(update={"replay_origin": REPLAY}), db=db, blobs=blobs)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def replay_host(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url=REPLAY) as c:
        yield c


@pytest.fixture
def token(db: Database) -> str:
    return Accounts(db).create_token(org="acme", email=ADMIN, role="admin")


@pytest.fixture
def archived(db: Database, blobs: FileBlobStore, token: str) -> tuple[str, bytes]:
    """A page snapshot with a WACZ: (its id, the archive's bytes)."""
    snapshot_id = add_snapshot(db, blobs, org_id_of(db), url=URL)
    return snapshot_id, add_archive(db, blobs, snapshot_id, URL, HTML)


def bearer(token: str, **more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **more}


def is_html(answer: object) -> bool:
    return str(getattr(answer, "headers", {}).get("content-type", "")).startswith("text/html")


# -- byte ranges -------------------------------------------------------------------------------


def test_a_range_is_answered_206_with_that_span(
    client: TestClient, token: str, archived: tuple[str, bytes]
) -> None:
    snapshot_id, data = archived
    path, size = f"/api/v1/snapshots/{snapshot_id}/wacz", len(data)
    spans = {
        "bytes=0-9": (0, 9),
        "bytes=100-": (100, size - 1),
        "bytes=-22": (size - 22, size - 1),
        f"bytes=10-{size * 2}": (10, size - 1),  # an end past the last byte stops there
        f"bytes=-{size * 2}": (0, size - 1),
    }
    for header, (first, last) in spans.items():
        answer = client.get(path, headers=bearer(token, Range=header))
        assert answer.status_code == 206, (header, answer.text)
        assert answer.content == data[first : last + 1], header
        assert answer.headers["content-range"] == f"bytes {first}-{last}/{size}", header
        assert answer.headers["content-length"] == str(last - first + 1)
        assert answer.headers["accept-ranges"] == "bytes"
        assert answer.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'


def test_what_cannot_be_a_range_is_ignored_and_what_is_past_the_end_is_416(
    client: TestClient, token: str, archived: tuple[str, bytes]
) -> None:
    snapshot_id, data = archived
    path, size = f"/api/v1/snapshots/{snapshot_id}/wacz", len(data)
    whole = (
        {"Range": "bytes=0-1,5-9"},  # several spans: RFC 9110 lets a server send it all
        {"Range": "items=0-1"},
        {"Range": "bytes=9-2"},
        {"Range": "bytes=x-"},
        {"Range": "bytes=0-9", "If-Range": '"another-version"'},
    )
    for headers in whole:
        answer = client.get(path, headers=bearer(token, **headers))
        assert answer.status_code == 200, headers
        assert answer.content == data and "content-range" not in answer.headers
    same = client.get(
        path,
        headers=bearer(
            token, Range="bytes=0-1", **{"If-Range": f'"{hashlib.sha256(data).hexdigest()}"'}
        ),
    )
    assert same.status_code == 206 and same.content == data[:2]

    for header in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=-0"):
        refused = client.get(path, headers=bearer(token, Range=header))
        assert refused.status_code == 416, header
        assert refused.headers["content-range"] == f"bytes */{size}"
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["status"] == 416


def test_a_range_of_a_large_artifact_streams_exactly_that_span(
    client: TestClient, db: Database, blobs: FileBlobStore, token: str
) -> None:
    snapshot_id = add_snapshot(db, blobs, org_id_of(db), url=URL)
    data = secrets.token_bytes(5 * 1024 * 1024)
    with db.session() as session:
        session.add(
            Artifact(
                snapshot_id=snapshot_id,
                role="wacz",
                sha256=blobs.put(data),
                size=len(data),
                media_type="application/wacz+zip",
            )
        )
    first, last = 1_000_003, 3_500_000
    answer = client.get(
        f"/api/v1/snapshots/{snapshot_id}/wacz",
        headers=bearer(token, Range=f"bytes={first}-{last}"),
    )
    assert answer.status_code == 206
    assert answer.content == data[first : last + 1]


# -- the replay host ----------------------------------------------------------------------------


def view_url(page: str) -> str:
    """The address of the view page a replay page frames, read from its iframe."""
    found = re.search(r'<iframe class="replay" src="([^"]+)"', page)
    assert found is not None, page
    return html.unescape(found[1])


def source_of(view: str) -> str:
    return parse_qs(urlsplit(view).query)["source"][0]


def test_the_viewer_is_served_from_node_modules_behind_a_guard(replay_host: TestClient) -> None:
    served = {
        "ui.js": DEFAULT_REPLAY_VIEWER_DIR / "ui.js",
        "viewer-sw.js": DEFAULT_REPLAY_VIEWER_DIR / "sw.js",
        "sw.js": replay.GUARD,
    }
    folder = replay.viewer_dir(replay_host.app.state.services.settings)
    for name, path in served.items():
        answer = replay_host.get(f"/replay/{name}")
        assert answer.status_code == 200, name
        assert answer.headers["content-type"].startswith("text/javascript")
        assert answer.headers["cache-control"] == "public, max-age=604800"
        if path != replay.GUARD:
            path = folder / path.name
        assert answer.content == path.read_bytes()
    assert 'importScripts("viewer-sw.js")' in replay_host.get("/replay/sw.js").text
    assert replay_host.get("/replay/package.json").status_code == 404
    assert replay_host.get("/replay/..%2Fpackage.json").status_code == 404

    for source in ("/replay/archive/x.wacz", f"{REPLAY}/replay/archive/x.wacz"):
        app = replay_host.get("/replay/", params={"source": source})
        assert app.status_code == 200 and "<replay-app-main>" in app.text
        assert app.headers["content-security-policy"] == "frame-ancestors 'self'"
    framed = replay_host.get(
        "/replay/",
        params={
            "source": "/replay/archive/x.wacz",
            "basePageUrl": f"{REPLAY}/replay/view?parent=http%3A%2F%2Ftestserver",
        },
    )
    assert framed.headers["content-security-policy"] == "frame-ancestors 'self' http://testserver"
    for source in ("", "https://elsewhere.test/x.wacz", "//elsewhere.test/x.wacz", "data:,x"):
        assert replay_host.get("/replay/", params={"source": source}).status_code == 403, source


def test_the_replay_host_serves_the_viewer_and_nothing_else(
    replay_host: TestClient, token: str, archived: tuple[str, bytes]
) -> None:
    snapshot_id, _ = archived
    refused = (
        "/",
        "/console",
        "/console/",
        "/console/sign-in",
        f"/console/snapshots/{snapshot_id}",
        "/api/v1/snapshots",
        f"/api/v1/snapshots/{snapshot_id}",
        f"/api/v1/snapshots/{snapshot_id}/wacz",
        "/s/abc",
        "/healthz",
        "/metrics",
        "/docs",
        "/openapi.json",
        "/.well-known/snapshotd-manifest-key",
        "/static/console.css",
        "/replay/index.html",
        "/replay/w/x",
        "/replayx",
    )
    for path in refused:
        answer = replay_host.get(path, headers=bearer(token))
        assert answer.status_code == 404, path
        assert answer.text == "Not found" and "set-cookie" not in answer.headers, path
    posted = replay_host.post("/console/sign-in", data={"token": token})
    assert posted.status_code == 404 and "set-cookie" not in posted.headers
    assert replay_host.cookies == {}


def test_the_main_origin_does_not_serve_the_viewer(client: TestClient) -> None:
    for path in ("/replay/", "/replay/view", "/replay/ui.js", "/replay/sw.js", "/replay/archive/x"):
        assert client.get(path, params={"source": "/replay/archive/x.wacz"}).status_code == 404


def test_the_view_page_opens_only_a_signed_archive_on_its_own_host(
    client: TestClient,
    replay_host: TestClient,
    token: str,
    archived: tuple[str, bytes],
) -> None:
    snapshot_id, data = archived
    sign_in(client, token)
    view = view_url(client.get(f"/console/snapshots/{snapshot_id}/replay").text)
    source = source_of(view)
    assert source.startswith(f"{REPLAY}/replay/archive/{snapshot_id}.wacz?expires=")

    page = replay_host.get(view)
    assert page.status_code == 200 and is_html(page)
    assert f'source="{html.escape(source)}"' in page.text
    assert f'url="{URL}"' in page.text and 'replayBase="/replay/"' in page.text
    assert 'newWindowBase="/replay/view?' in page.text
    policy = page.headers["content-security-policy"]
    assert "frame-ancestors http://testserver" in policy
    assert "set-cookie" not in page.headers

    expires = int(parse_qs(urlsplit(source).query)["expires"][0])
    forged = source.replace("sig=", "sig=x")
    other = source.replace(REPLAY, "http://elsewhere.test")
    stale = source.replace(f"expires={expires}", f"expires={expires - 7200}")
    for bad in (
        "",
        forged,
        other,
        stale,
        f"{REPLAY}/replay/archive/{snapshot_id}.wacz",
        "/s/abc/wacz",
        "https://elsewhere.test/x.wacz",
        "data:,x",
    ):
        answer = replay_host.get("/replay/view", params={"source": bad, "url": URL})
        assert answer.status_code == 403, bad

    # The link answers byte ranges, with no token or cookie, on the replay host only.
    path = source.removeprefix(REPLAY)
    archive = replay_host.get(path, headers={"Range": "bytes=0-3"})
    assert archive.status_code == 206 and archive.content == data[:4] == b"PK\x03\x04"
    assert archive.headers["cache-control"] == "no-store"
    assert replay_host.get(path).content == data
    assert replay_host.get(forged.removeprefix(REPLAY)).status_code == 404
    assert client.get(path).status_code == 404


def test_an_expired_archive_link_is_gone(
    replay_host: TestClient, db: Database, blobs: FileBlobStore, archived: tuple[str, bytes]
) -> None:
    snapshot_id, _ = archived
    with db.session() as session:
        snapshot = session.get(Snapshot, snapshot_id)
        assert snapshot is not None
        expires, sig = Downloads(db, blobs).sign(snapshot, "wacz", lifetime=-10)
    answer = replay_host.get(
        f"/replay/archive/{snapshot_id}.wacz", params={"expires": expires, "sig": sig}
    )
    assert answer.status_code == 410
    view = replay_host.get(
        "/replay/view",
        params={
            "source": f"{REPLAY}/replay/archive/{snapshot_id}.wacz?expires={expires}&sig={sig}"
        },
    )
    assert view.status_code == 403


def test_without_a_replay_host_replay_is_not_offered(
    settings: Settings,
    db: Database,
    blobs: FileBlobStore,
    token: str,
    archived: tuple[str, bytes],
) -> None:
    snapshot_id, data = archived
    share_id = share_of(db, snapshot_id, replay=True)
    with TestClient(create_app(settings, db=db, blobs=blobs), base_url="http://testserver") as c:
        for path in ("/replay/", "/replay/view", "/replay/ui.js"):
            assert c.get(path).status_code == 503, path
        share = c.get(f"/s/{share_id}")
        assert share.status_code == 200 and "/replay" not in share.text
        page = c.get(f"/s/{share_id}/replay")
        assert page.status_code == 503 and is_html(page)
        assert "SNAPSHOTD_REPLAY_ORIGIN" in page.text
        assert c.get(f"/s/{share_id}/wacz").content == data
        sign_in(c, token)
        snapshot = c.get(f"/console/snapshots/{snapshot_id}").text
        assert "/replay" not in snapshot and "SNAPSHOTD_REPLAY_ORIGIN" in snapshot
        console = c.get(f"/console/snapshots/{snapshot_id}/replay")
        assert console.status_code == 503 and is_html(console)
        assert "SNAPSHOTD_REPLAY_ORIGIN" in console.text
        assert c.get(f"/console/snapshots/{snapshot_id}/files/wacz").content == data


def test_without_the_viewer_installed_replay_pages_say_so(
    app: FastAPI,
    db: Database,
    blobs: FileBlobStore,
    token: str,
    archived: tuple[str, bytes],
    tmp_path: Path,
) -> None:
    settings = app.state.services.settings
    bare = settings.model_copy(update={"replay_viewer_dir": str(tmp_path / "nowhere")})
    snapshot_id, _ = archived
    share_id = share_of(db, snapshot_id, replay=True)
    without = create_app(bare, db=db, blobs=blobs)
    with TestClient(without, base_url=REPLAY) as replay_host:
        assert replay_host.get("/replay/ui.js").status_code == 503
    with TestClient(without, base_url="http://testserver") as client:
        page = client.get(f"/s/{share_id}/replay")
        assert page.status_code == 503 and is_html(page)
        assert "archive viewer is not installed" in page.text
        sign_in(client, token)
        console = client.get(f"/console/snapshots/{snapshot_id}/replay")
        assert console.status_code == 503 and is_html(console)
        assert "archive viewer is not installed" in console.text


@pytest.mark.parametrize(
    ("origin", "base_url"),
    [
        ("replay.test", ""),
        ("ftp://replay.test", ""),
        ("https://replay.test/replay", ""),
        ("https://replay.test?x=1", ""),
        ("https://user@replay.test", ""),
        ("https://snap.example:8443", "https://snap.example"),
        ("http://SNAP.example", "https://snap.example/base"),
    ],
)
def test_a_replay_origin_is_an_origin_on_a_host_of_its_own(origin: str, base_url: str) -> None:
    with pytest.raises(ValidationError):
        Settings(replay_origin=origin, base_url=base_url)


def test_a_replay_origin_is_kept_as_a_browser_writes_it() -> None:
    settings = Settings(
        replay_origin="https://Replay.Snap.Example:8443/", base_url="https://snap.example"
    )
    assert settings.replay_origin == "https://replay.snap.example:8443"


# -- the console -------------------------------------------------------------------------------


def test_the_console_offers_replay_only_for_a_snapshot_with_an_archive(
    client: TestClient, db: Database, blobs: FileBlobStore, token: str, archived: tuple[str, bytes]
) -> None:
    snapshot_id, data = archived
    plain = add_snapshot(db, blobs, org_id_of(db), url=URL)
    sign_in(client, token)

    page = client.get(f"/console/snapshots/{snapshot_id}")
    assert f'href="/console/snapshots/{snapshot_id}/replay"' in page.text
    assert "SNAPSHOTD_REPLAY_ORIGIN" not in page.text
    assert "/replay" not in client.get(f"/console/snapshots/{plain}").text

    replay_page = client.get(f"/console/snapshots/{snapshot_id}/replay")
    assert replay_page.status_code == 200
    assert "<replay-web-page" not in replay_page.text and URL in replay_page.text
    view = view_url(replay_page.text)
    assert view.startswith(f"{REPLAY}/replay/view?source=")
    assert parse_qs(urlsplit(view).query)["url"] == [URL]
    policy = replay_page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and f"frame-src {REPLAY}" in policy
    # The archive link lives an hour.
    expires = int(parse_qs(urlsplit(source_of(view)).query)["expires"][0])
    assert 3590 <= expires - time.time() <= 3600
    assert client.get(f"/console/snapshots/{snapshot_id}/files/wacz").content == data
    assert client.get(f"/console/snapshots/{plain}/replay").status_code == 404


def test_another_organization_cannot_replay_a_snapshot(
    client: TestClient, db: Database, archived: tuple[str, bytes]
) -> None:
    snapshot_id, _ = archived
    stranger = Accounts(db).create_token(org="globex", email="x@globex.test", role="admin")
    sign_in(client, stranger)
    assert client.get(f"/console/snapshots/{snapshot_id}/replay").status_code == 404
    assert client.get(f"/console/snapshots/{snapshot_id}/files/wacz").status_code == 404


# -- share links -------------------------------------------------------------------------------


def test_a_share_link_with_replay_frames_the_viewer_and_serves_the_archive(
    client: TestClient, replay_host: TestClient, db: Database, archived: tuple[str, bytes]
) -> None:
    snapshot_id, data = archived
    share_id = share_of(db, snapshot_id, replay=True, life=timedelta(minutes=10))

    assert f'href="http://testserver/s/{share_id}/replay"' in client.get(f"/s/{share_id}").text
    page = client.get(f"/s/{share_id}/replay")
    assert page.status_code == 200 and is_html(page)
    view = view_url(page.text)
    assert page.headers["cache-control"] == "no-store"
    policy = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and f"frame-src {REPLAY}" in policy
    # The archive link lives no longer than the share link.
    source = source_of(view)
    expires = int(parse_qs(urlsplit(source).query)["expires"][0])
    assert 590 <= expires - time.time() <= 600
    assert replay_host.get(view).status_code == 200
    assert replay_host.get(source.removeprefix(REPLAY)).content == data
    archive = client.get(f"/s/{share_id}/wacz", headers={"Range": "bytes=0-3"})
    assert archive.status_code == 206 and archive.content == data[:4] == b"PK\x03\x04"
    assert archive.headers["cache-control"] == "no-store"


def test_a_share_link_without_replay_serves_neither(
    client: TestClient, db: Database, archived: tuple[str, bytes]
) -> None:
    snapshot_id, _ = archived
    share_id = share_of(db, snapshot_id, replay=False)
    assert client.get(f"/s/{share_id}").status_code == 200
    assert "/replay" not in client.get(f"/s/{share_id}").text
    for path in ("replay", "wacz"):
        answer = client.get(f"/s/{share_id}/{path}")
        assert answer.status_code == 404, path
        assert is_html(answer)


def test_a_replay_link_to_a_snapshot_without_an_archive_is_404(
    client: TestClient, db: Database, blobs: FileBlobStore, token: str
) -> None:
    plain = add_snapshot(db, blobs, org_id_of(db), url=URL)
    share_id = share_of(db, plain, replay=True)
    assert "/replay" not in client.get(f"/s/{share_id}").text
    assert client.get(f"/s/{share_id}/replay").status_code == 404
    assert client.get(f"/s/{share_id}/wacz").status_code == 404


def test_an_expired_or_revoked_link_replays_nothing(
    client: TestClient, db: Database, archived: tuple[str, bytes]
) -> None:
    snapshot_id, _ = archived
    expired = share_of(db, snapshot_id, replay=True)
    revoked = share_of(db, snapshot_id, replay=True)
    with db.session() as session:
        row = session.get(Share, expired)
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
        row = session.get(Share, revoked)
        assert row is not None
        row.revoked_at = utcnow()
    for path in ("replay", "wacz"):
        assert client.get(f"/s/{expired}/{path}").status_code == 404, path
        gone = client.get(f"/s/{revoked}/{path}")
        assert gone.status_code == 410 and is_html(gone), path


def test_guessing_replay_links_spends_the_miss_budget(
    settings: Settings, db: Database, blobs: FileBlobStore, archived: tuple[str, bytes]
) -> None:
    guarded = settings.model_copy(update={"share_misses_per_minute": 3})
    snapshot_id, _ = archived
    real = share_of(db, snapshot_id, replay=True)
    with TestClient(create_app(guarded, db=db, blobs=blobs)) as client:
        statuses = [
            client.get(f"/s/{secrets.token_urlsafe(32)}/{path}").status_code
            for path in ("replay", "wacz", "replay", "wacz", "replay")
        ]
        assert statuses[:3] == [404, 404, 404] and statuses[-1] == 429
        assert client.get(f"/s/{real}/replay").status_code == 429
