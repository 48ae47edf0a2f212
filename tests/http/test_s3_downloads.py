"""Downloads with blobs in a real S3-compatible bucket (the SeaweedFS `make test` starts): the API
answers a redirect to a presigned bucket URL that never outlives the snapshot or the link, and the
bytes fetched from the bucket are the ones the API vouches for."""

from __future__ import annotations

import hashlib
import io
import secrets
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from snapshotd.client import SnapshotClient
from snapshotd.config import Settings
from snapshotd.http.app import create_app
from snapshotd.store.db import Database
from snapshotd.store.models import Artifact, Snapshot, utcnow
from snapshotd.store.s3 import S3BlobStore
from tests.servers import serving
from tests.store.test_blobs import S3_ENDPOINT, s3_store
from tests.wacz import share_of


@pytest.fixture
def store() -> S3BlobStore:
    return s3_store()


@pytest.fixture
def s3_settings(settings: Settings, store: S3BlobStore) -> Settings:
    return settings.model_copy(
        update={
            "blobs": f"s3://{store.bucket}/{store.prefix}",
            "s3_endpoint_url": S3_ENDPOINT,
            "s3_access_key_id": "snapshotd-test",
            "s3_secret_access_key": "snapshotd-test-secret",
        }
    )


@pytest.fixture
def client(s3_settings: Settings, db: Database, store: S3BlobStore) -> Iterator[TestClient]:
    with TestClient(create_app(s3_settings, db=db, blobs=store)) as client:
        yield client


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 120, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def stored_snapshot(
    client: TestClient, auth: dict[str, str], db: Database, store: S3BlobStore, **roles: bytes
) -> str:
    """A queued snapshot made successful the way a worker does it, its artifacts in the bucket."""
    response = client.post("/api/v1/snapshots", headers=auth, json={"url": "https://example.com"})
    assert response.status_code == 202, response.text
    snapshot_id: str = response.json()["id"]
    with db.session() as session:
        snapshot = session.get(Snapshot, snapshot_id)
        assert snapshot is not None
        snapshot.status, snapshot.completed_at = "success", utcnow()
        for role, data in roles.items():
            media_type = "image/png" if role == "image" else "text/html"
            session.add(
                Artifact(
                    snapshot_id=snapshot_id,
                    role=role,
                    media_type=media_type,
                    sha256=store.put(data),
                    size=len(data),
                )
            )
    return snapshot_id


def lifetime(location: str) -> int:
    """The X-Amz-Expires of a presigned URL: how long the bucket will honour it."""
    return int(parse_qs(urlsplit(location).query)["X-Amz-Expires"][0])


def test_a_signed_in_download_redirects_to_the_bucket_with_the_same_bytes(
    client: TestClient, auth: dict[str, str], db: Database, store: S3BlobStore
) -> None:
    data = png()
    snapshot_id = stored_snapshot(client, auth, db, store, image=data)
    answer = client.get(
        f"/api/v1/snapshots/{snapshot_id}/image", headers=auth, follow_redirects=False
    )
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith(S3_ENDPOINT) and 0 < lifetime(location) <= 300
    assert answer.headers["x-content-sha256"] == hashlib.sha256(data).hexdigest()
    fetched = httpx.get(location)  # no credentials: the URL alone grants this one object
    assert fetched.status_code == 200 and fetched.content == data
    assert fetched.headers["content-type"] == "image/png"


def test_a_redirect_never_outlives_the_snapshot(
    client: TestClient, auth: dict[str, str], db: Database, store: S3BlobStore
) -> None:
    snapshot_id = stored_snapshot(client, auth, db, store, image=png())
    with db.session() as session:
        snapshot = session.get(Snapshot, snapshot_id)
        assert snapshot is not None
        snapshot.expires_at = utcnow() + timedelta(seconds=40)
    answer = client.get(
        f"/api/v1/snapshots/{snapshot_id}/image", headers=auth, follow_redirects=False
    )
    assert answer.status_code == 302
    assert 30 <= lifetime(answer.headers["location"]) <= 40


def test_a_web_archive_is_streamed_in_ranges_for_the_replay_viewer(
    client: TestClient, auth: dict[str, str], db: Database, store: S3BlobStore
) -> None:
    """The viewer's service worker may read from its own origin only, so the console and a
    share link serve the WACZ themselves, a byte range straight from the bucket."""
    archive = secrets.token_bytes(3 * 1024 * 1024)
    snapshot_id = stored_snapshot(client, auth, db, store, image=png(), wacz=archive)
    share_id = share_of(db, snapshot_id, replay=True)
    span = {"Range": "bytes=2000000-2099999"}
    answer = client.get(f"/s/{share_id}/wacz", headers=span, follow_redirects=False)
    assert answer.status_code == 206, answer.text
    assert answer.content == archive[2_000_000:2_100_000]
    assert answer.headers["content-range"] == f"bytes 2000000-2099999/{len(archive)}"
    image = client.get(f"/s/{share_id}/image", follow_redirects=False)
    assert image.status_code == 302  # the picture still goes to the bucket


def test_the_replay_hosts_archive_link_streams_ranges_from_the_bucket(
    s3_settings: Settings, auth: dict[str, str], db: Database, store: S3BlobStore
) -> None:
    """The viewer's worker reads the archive from the replay host itself, through a signed
    link that never redirects to the bucket."""
    replay = "http://replay.test"
    app = create_app(s3_settings.model_copy(update={"replay_origin": replay}), db=db, blobs=store)
    archive = secrets.token_bytes(3 * 1024 * 1024)
    with TestClient(app) as client, TestClient(app, base_url=replay) as replay_host:
        snapshot_id = stored_snapshot(client, auth, db, store, image=png(), wacz=archive)
        share_id = share_of(db, snapshot_id, replay=True)
        page = client.get(f"/s/{share_id}/replay")
        assert page.status_code == 200, page.text
        view = page.text.split('class="replay" src="', 1)[1].split('"', 1)[0]
        source = parse_qs(urlsplit(view.replace("&amp;", "&")).query)["source"][0]
        span = {"Range": "bytes=1000000-1000099"}
        answer = replay_host.get(source, headers=span, follow_redirects=False)
        assert answer.status_code == 206, answer.text
        assert answer.content == archive[1_000_000:1_000_100]


def test_a_share_link_redirect_never_outlives_the_link(
    client: TestClient, auth: dict[str, str], db: Database, store: S3BlobStore
) -> None:
    data = png()
    snapshot_id = stored_snapshot(client, auth, db, store, image=data)
    created = client.post(
        f"/api/v1/snapshots/{snapshot_id}/shares", headers=auth, json={"expires_in": 60}
    )
    assert created.status_code == 201, created.text
    share_id = created.json()["id"]
    answer = client.get(f"/s/{share_id}/image", follow_redirects=False)
    assert answer.status_code == 302
    location = answer.headers["location"]
    assert 50 <= lifetime(location) <= 60
    assert httpx.get(location).content == data


def test_captured_markup_downloads_from_the_bucket_as_an_attachment(
    client: TestClient, auth: dict[str, str], db: Database, store: S3BlobStore
) -> None:
    markup = b"<html><script>alert(1)</script></html>"
    snapshot_id = stored_snapshot(client, auth, db, store, image=png(), html=markup)
    answer = client.get(
        f"/api/v1/snapshots/{snapshot_id}/html", headers=auth, follow_redirects=False
    )
    fetched = httpx.get(answer.headers["location"])
    assert fetched.content == markup
    assert fetched.headers["content-disposition"].startswith("attachment")


def test_the_sdk_follows_the_redirect_and_checks_the_hash(
    s3_settings: Settings, db: Database, store: S3BlobStore, auth: dict[str, str], token: str
) -> None:
    data = png()
    app = create_app(s3_settings, db=db, blobs=store)
    with TestClient(app) as client:
        snapshot_id = stored_snapshot(client, auth, db, store, image=data)
    with serving(create_app(s3_settings, db=db, blobs=store)) as base_url:
        sdk = SnapshotClient(base_url=base_url, token=token)
        try:
            assert sdk.download(snapshot_id, "image") == data
        finally:
            sdk.close()


def test_downloads_stream_through_the_api_when_redirects_are_off(
    s3_settings: Settings, db: Database, store: S3BlobStore, auth: dict[str, str]
) -> None:
    data = png()
    settings = s3_settings.model_copy(update={"s3_redirect_downloads": False})
    with TestClient(create_app(settings, db=db, blobs=store)) as client:
        snapshot_id = stored_snapshot(client, auth, db, store, image=data)
        answer = client.get(
            f"/api/v1/snapshots/{snapshot_id}/image", headers=auth, follow_redirects=False
        )
    assert answer.status_code == 200 and answer.content == data
