"""The SDK against a real uvicorn server in a thread, with real Chromium where a capture runs."""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from PIL import Image
from sqlalchemy import update

import snapshotd.client
from snapshotd.client import (
    AuthenticationError,
    BadRequestError,
    CaptureFailedError,
    ConflictError,
    IntegrityError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
    SnapshotClient,
    SnapshotTimeout,
    render_url,
)
from snapshotd.config import Settings
from snapshotd.http.app import create_app
from snapshotd.services.accounts import Accounts
from snapshotd.services.capture_request import fields_from_text, parse_request
from snapshotd.services.render_keys import signature, split_signed
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from snapshotd.store.models import Snapshot as SnapshotRow
from tests.pages import PageServer
from tests.servers import serving

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def live(live_url: str, token: str) -> Iterator[SnapshotClient]:
    with SnapshotClient(base_url=live_url, token=token) as client:
        yield client


@pytest.fixture
def queued(queued_url: str, token: str) -> Iterator[SnapshotClient]:
    with SnapshotClient(base_url=queued_url, token=token) as client:
        yield client


class RecordingTransport(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return super().handle_request(request)


def test_create_wait_download_and_integrity(
    live: SnapshotClient, pages: PageServer, blobs: FileBlobStore, tmp_path: Path
) -> None:
    queued = live.create(pages.url + "/", width=640, height=480, evidence=False)
    assert queued.status in ("queued", "working") and queued.job is not None

    done = live.wait(queued.id, timeout=60, interval=0.1)
    assert done.id == queued.id and done.status == "success"
    assert done.completed_at and done.metadata["title"] == "snapshotd test page"
    artifact = next(item for item in done.artifacts if item["role"] == "image")

    target = tmp_path / "shot.png"
    image = live.download(done, "image", path=target)
    assert image.startswith(PNG)
    assert target.read_bytes() == image
    assert hashlib.sha256(image).hexdigest() == artifact["sha256"]

    stored = blobs.root / artifact["sha256"][:2] / artifact["sha256"][2:4] / artifact["sha256"]
    stored.write_bytes(bytes(byte ^ 0xFF for byte in image))
    spoiled = tmp_path / "spoiled.png"
    with pytest.raises(IntegrityError, match=artifact["sha256"]):
        live.download(done.id, path=spoiled)
    assert not spoiled.exists()


def test_wait_raises_capture_failed_with_the_snapshot(
    live: SnapshotClient, pages: PageServer
) -> None:
    queued = live.create(pages.url + "/box", selector="#missing", timeout_ms=3000)
    with pytest.raises(CaptureFailedError) as failure:
        live.wait(queued, timeout=60, interval=0.1)
    snapshot = failure.value.snapshot
    assert snapshot.id == queued.id and snapshot.status == "failed"
    assert snapshot.status_message and "#missing" in snapshot.status_message
    assert str(failure.value) == snapshot.status_message


def test_capture_answers_png_then_delete_removes_it(
    live: SnapshotClient, pages: PageServer
) -> None:
    image = live.capture(pages.url + "/", width=400, height=300, evidence=False)
    assert image.startswith(PNG)

    [captured] = live.list()
    assert captured.status == "success" and captured.url == pages.url + "/"
    live.delete(captured.id)
    with pytest.raises(NotFoundError):
        live.get(captured.id)
    with pytest.raises(NotFoundError):
        live.delete(captured.id)


def test_list_follows_cursors_newest_first(queued_url: str, token: str, pages: PageServer) -> None:
    transport = RecordingTransport()
    with SnapshotClient(base_url=queued_url, token=token, transport=transport) as client:
        ids = [client.create(f"{pages.url}/?n={n}").id for n in range(3)]
        listed = [snapshot.id for snapshot in client.list(limit=2)]
    assert listed == ids[::-1]
    fetched = [
        r.url.params
        for r in transport.requests
        if r.method == "GET" and r.url.path == "/api/v1/snapshots"
    ]
    assert len(fetched) == 2
    assert "cursor" not in fetched[0] and fetched[1]["cursor"]
    assert all(params["limit"] == "2" for params in fetched)


def test_list_keeps_its_filters_on_later_pages(
    queued: SnapshotClient, db: Database, pages: PageServer
) -> None:
    first, middle, last = (queued.create(f"{pages.url}/?n={n}") for n in range(3))
    with db.session() as session:
        session.execute(
            update(SnapshotRow).where(SnapshotRow.id == middle.id).values(status="failed")
        )
    assert [s.id for s in queued.list(status="queued", limit=1)] == [last.id, first.id]
    assert [s.id for s in queued.list(status="failed", limit=1)] == [middle.id]


def test_http_errors_are_typed(
    queued_url: str, queued: SnapshotClient, db: Database, pages: PageServer
) -> None:
    stranger = SnapshotClient(base_url=queued_url, token="not-a-token")
    with stranger, pytest.raises(AuthenticationError) as denied:
        stranger.get("snp_nope")
    assert denied.value.status == 401 and denied.value.problem["status"] == 401

    with pytest.raises(BadRequestError, match="scheme") as refused:
        queued.create("file:///etc/passwd")
    assert refused.value.status == 400 and refused.value.problem["title"] == "Invalid URL"
    with pytest.raises(BadRequestError, match="larger than"):
        queued.create(pages.url + "/", hide_selectors=["x" * 30_000] * 150)

    with pytest.raises(NotFoundError, match="snp_nope") as missing:
        queued.get("snp_nope")
    assert missing.value.problem["detail"] == str(missing.value)

    snapshot = queued.create(pages.url + "/", idempotency_key="order-1")
    assert queued.create(pages.url + "/", idempotency_key="order-1").id == snapshot.id
    with pytest.raises(ConflictError, match="Idempotency-Key"):
        queued.create(pages.url + "/box", idempotency_key="order-1")
    with pytest.raises(ConflictError, match="still queued"):
        queued.download(snapshot.id)

    viewer = Accounts(db).create_token(org="acme", email="viewer@acme.test", role="viewer")
    with SnapshotClient(base_url=queued_url, token=viewer) as reader:
        assert reader.get(snapshot.id).id == snapshot.id
        with pytest.raises(PermissionDeniedError, match="uploader"):
            reader.create(pages.url + "/")


def test_full_queue_is_rate_limited_with_retry_after(
    settings: Settings, db: Database, blobs: FileBlobStore, token: str, pages: PageServer
) -> None:
    small = settings.model_copy(update={"queue_max_length": 1})
    with (
        serving(create_app(small, db=db, blobs=blobs)) as url,
        SnapshotClient(base_url=url, token=token) as client,
    ):
        client.create(pages.url + "/")
        with pytest.raises(RateLimitedError, match="queue is full") as limited:
            client.create(pages.url + "/")
    assert limited.value.status == 429 and limited.value.retry_after == 10.0


def test_wait_gives_up_on_a_snapshot_that_stays_queued(
    queued: SnapshotClient, pages: PageServer
) -> None:
    snapshot = queued.create(pages.url + "/")
    started = time.monotonic()
    with pytest.raises(SnapshotTimeout) as timeout:
        queued.wait(snapshot.id, timeout=0.3, interval=0.05)
    assert time.monotonic() - started < 5
    assert timeout.value.snapshot.status == "queued"
    assert isinstance(timeout.value, TimeoutError)


def test_an_explicit_transport_is_used(queued_url: str, token: str, pages: PageServer) -> None:
    with SnapshotClient(
        base_url=queued_url, token=token, transport=httpx.HTTPTransport()
    ) as client:
        created = client.create(pages.url + "/")
        assert client.get(created.id) == created


def test_server_errors_without_a_problem_body() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, text="upstream unavailable")

    client = SnapshotClient(
        base_url="http://127.0.0.1:9", token="t", transport=httpx.MockTransport(answer)
    )
    with client, pytest.raises(ServerError, match="HTTP 503") as failure:
        client.get("snp_x")
    assert failure.value.status == 503 and failure.value.problem == {}


def test_public_names_are_pinned() -> None:
    assert sorted(snapshotd.client.__all__) == [
        "AuthenticationError",
        "BadRequestError",
        "CaptureFailedError",
        "ClientError",
        "ConflictError",
        "IntegrityError",
        "NotFoundError",
        "PermissionDeniedError",
        "RateLimitedError",
        "ServerError",
        "Share",
        "Snapshot",
        "SnapshotClient",
        "SnapshotTimeout",
        "render_url",
    ]


# -- render links ------------------------------------------------------------------------------


def test_a_render_link_built_by_the_sdk_shows_the_page_and_a_changed_one_is_refused(
    live: SnapshotClient, live_url: str, auth: dict[str, str], pages: PageServer
) -> None:
    created = httpx.post(f"{live_url}/api/v1/render-keys", json={"name": "blog"}, headers=auth)
    assert created.status_code == 201, created.text
    key = created.json()
    until = datetime.now(UTC) + timedelta(minutes=10)
    link = live.render_url(
        pages.url + "/",
        key_id=key["id"],
        secret=key["secret"],
        width=640,
        height=400,
        evidence=False,
        expires=until,
    )
    assert link.startswith(f"{live_url}/render/{key['id']}/png?")
    # The same link, from a web app that holds the key but no API token.
    assert link == render_url(
        live_url,
        pages.url + "/",
        key_id=key["id"],
        secret=key["secret"],
        width=640,
        height=400,
        evidence=False,
        expires=int(until.timestamp()),
    )

    shown = httpx.get(link, timeout=60)
    assert shown.status_code == 200, shown.text
    assert shown.headers["content-type"] == "image/png" and shown.headers["x-cache"] == "miss"
    assert Image.open(io.BytesIO(shown.content)).size == (640, 400)
    assert httpx.get(link, timeout=60).headers["x-cache"] == "hit"

    changed = httpx.get(link.replace("width=640", "width=1280"), timeout=60)
    assert changed.status_code == 403
    expired = live.render_url(
        pages.url + "/",
        key_id=key["id"],
        secret=key["secret"],
        expires=datetime.now(UTC) - timedelta(minutes=1),
    )
    assert httpx.get(expired, timeout=60).status_code == 410


def test_render_url_writes_options_the_way_the_server_reads_them() -> None:
    before = time.time()
    link = render_url(
        "https://snap.example/base/",
        "https://example.org/a b?x=1&y=2",
        key_id="rk/../admin",
        secret="rks_secret",
        format="webp",
        full_page=True,
        block_ads=False,
        selector=None,
        fail_on_status=[404, "500-599"],
        geolocation={"latitude": 48.85, "longitude": 2.35},
        cache_ttl=3600,
        force=True,
        expires=timedelta(hours=1),
    )
    parts = urlsplit(link)
    assert (parts.scheme, parts.netloc) == ("https", "snap.example")
    assert parts.path == "/base/render/rk%2F..%2Fadmin/webp"
    signed, given = split_signed(parts.query.encode())
    assert given == signature("rks_secret", signed)
    pairs = parse_qsl(signed.decode(), keep_blank_values=True)
    assert [name for name, _ in pairs] == [
        "url",
        "full_page",
        "block_ads",
        "fail_on_status",
        "fail_on_status",
        "geolocation",
        "expires",
        "cache_ttl",
        "force",
    ]
    fields = fields_from_text(pairs)
    assert before + 3600 - 1 <= int(fields.pop("expires")) <= time.time() + 3600
    assert (fields.pop("cache_ttl"), fields.pop("force")) == ("3600", "true")
    request = parse_request(fields)
    assert request.url == "https://example.org/a b?x=1&y=2"
    assert request.full_page and not request.block_ads and request.selector is None
    assert request.fail_on_status == ["404", "500-599"]
    assert request.geolocation is not None and request.geolocation.latitude == 48.85

    naive = render_url(
        "http://h", "https://e/", key_id="k", secret="s", expires=datetime(2030, 1, 1)
    )
    assert f"expires={int(datetime(2030, 1, 1, tzinfo=UTC).timestamp())}&" in naive
    with pytest.raises(ValueError, match="format"):
        render_url("http://h", "https://e/", key_id="k", secret="s", format="gif")
    with pytest.raises(TypeError, match="headers"):
        render_url("http://h", "https://e/", key_id="k", secret="s", headers={"X-A": "1"})
