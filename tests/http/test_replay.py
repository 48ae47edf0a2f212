"""Replay over HTTP: byte ranges on artifact downloads (the viewer reads a WACZ by ranges), the
viewer's files under /replay/, and who may open a replay page or its archive. The viewer itself
runs in Chromium in tests/console/test_replay.py."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from snapshotd.config import DEFAULT_REPLAY_VIEWER_DIR, Settings
from snapshotd.http import replay
from snapshotd.http.app import create_app
from snapshotd.services.accounts import Accounts
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from snapshotd.store.models import Artifact, Share, utcnow
from tests.console.conftest import ADMIN, add_snapshot, org_id_of, sign_in
from tests.wacz import add_archive, share_of

URL = "https://news.example.org/figures"
HTML = "<html><body><h1>Figures</h1></body></html>"


@pytest.fixture
def client(settings: Settings, db: Database, blobs: FileBlobStore) -> Iterator[TestClient]:
    with TestClient(create_app(settings, db=db, blobs=blobs), base_url="http://testserver") as c:
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


# -- the viewer's files ------------------------------------------------------------------------


def test_the_viewer_is_served_from_node_modules_behind_a_guard(client: TestClient) -> None:
    served = {
        "ui.js": DEFAULT_REPLAY_VIEWER_DIR / "ui.js",
        "viewer-sw.js": DEFAULT_REPLAY_VIEWER_DIR / "sw.js",
        "sw.js": replay.GUARD,
    }
    for name, path in served.items():
        answer = client.get(f"/replay/{name}")
        assert answer.status_code == 200, name
        assert answer.headers["content-type"].startswith("text/javascript")
        assert answer.headers["cache-control"] == "public, max-age=604800"
        assert answer.content == path.read_bytes()
    assert 'importScripts("viewer-sw.js")' in client.get("/replay/sw.js").text
    assert client.get("/replay/package.json").status_code == 404
    assert client.get("/replay/..%2Fpackage.json").status_code == 404

    for source in ("/s/abc/wacz", "http://testserver/console/snapshots/snp_x/files/wacz"):
        app = client.get("/replay/", params={"source": source})
        assert app.status_code == 200 and "<replay-app-main>" in app.text
        assert app.headers["content-security-policy"] == "frame-ancestors 'self'"
    for source in ("", "https://elsewhere.test/x.wacz", "//elsewhere.test/x.wacz", "data:,x"):
        assert client.get("/replay/", params={"source": source}).status_code == 403, source


def test_without_the_viewer_installed_replay_pages_say_so(
    settings: Settings,
    db: Database,
    blobs: FileBlobStore,
    token: str,
    archived: tuple[str, bytes],
    tmp_path: Path,
) -> None:
    bare = settings.model_copy(update={"replay_viewer_dir": str(tmp_path / "nowhere")})
    snapshot_id, _ = archived
    share_id = share_of(db, snapshot_id, replay=True)
    with TestClient(create_app(bare, db=db, blobs=blobs), base_url="http://testserver") as client:
        assert client.get("/replay/ui.js").status_code == 503
        page = client.get(f"/s/{share_id}/replay")
        assert page.status_code == 503 and is_html(page)
        assert "archive viewer is not installed" in page.text
        sign_in(client, token)
        console = client.get(f"/console/snapshots/{snapshot_id}/replay")
        assert console.status_code == 503 and is_html(console)
        assert "archive viewer is not installed" in console.text


# -- the console -------------------------------------------------------------------------------


def test_the_console_offers_replay_only_for_a_snapshot_with_an_archive(
    client: TestClient, db: Database, blobs: FileBlobStore, token: str, archived: tuple[str, bytes]
) -> None:
    snapshot_id, data = archived
    plain = add_snapshot(db, blobs, org_id_of(db), url=URL)
    sign_in(client, token)

    page = client.get(f"/console/snapshots/{snapshot_id}")
    assert f'href="/console/snapshots/{snapshot_id}/replay"' in page.text
    assert "/replay" not in client.get(f"/console/snapshots/{plain}").text

    replay = client.get(f"/console/snapshots/{snapshot_id}/replay")
    assert replay.status_code == 200
    assert f'source="/console/snapshots/{snapshot_id}/files/wacz"' in replay.text
    assert f'url="{URL}"' in replay.text and 'replayBase="/replay/"' in replay.text
    assert f'newWindowBase="/console/snapshots/{snapshot_id}/replay"' in replay.text
    assert "frame-ancestors 'none'" in replay.headers["content-security-policy"]
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


def test_a_share_link_with_replay_serves_the_viewer_page_and_the_archive(
    client: TestClient, db: Database, archived: tuple[str, bytes]
) -> None:
    snapshot_id, data = archived
    share_id = share_of(db, snapshot_id, replay=True)

    assert f'href="http://testserver/s/{share_id}/replay"' in client.get(f"/s/{share_id}").text
    page = client.get(f"/s/{share_id}/replay")
    assert page.status_code == 200 and is_html(page)
    assert f'source="/s/{share_id}/wacz"' in page.text
    # An archived page opened on its own comes back here, not to replayweb.page.
    assert f'newWindowBase="/s/{share_id}/replay"' in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
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
