"""The capture cache on every capture route: a repeat is answered from a recent identical capture
of the same organization, `force` and a TTL of 0 capture again, hits take nothing from the
creation limit, and identical requests at once (in one process or several) make one capture."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import sync_playwright

from snapshotd.config import Settings
from snapshotd.http.app import create_app
from snapshotd.services.accounts import Accounts
from snapshotd.services.capture_cache import CacheAsk, normalized_url
from snapshotd.services.capture_request import CaptureRequest
from snapshotd.services.graph import build_services
from snapshotd.services.org_settings import OrgSettings
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from tests.http.test_render_links import new_key, page_hits, signed
from tests.pages import PageServer
from tests.servers import serving


def capture(client: TestClient | httpx.Client, auth: dict[str, str], **query: Any) -> Any:
    answer = client.get("/api/v1/capture", params=query, headers=auth)
    assert answer.status_code == 200, answer.text
    return answer


def wait_done(client: TestClient, auth: dict[str, str], snapshot_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body = client.get(f"/api/v1/snapshots/{snapshot_id}", headers=auth).json()
        if body["status"] in ("success", "failed"):
            return body
        time.sleep(0.05)
    raise AssertionError(f"{snapshot_id} did not finish")


def test_urls_that_name_the_same_page_share_a_key() -> None:
    assert normalized_url("HTTPS://Example.ORG:443") == "https://example.org/"
    assert normalized_url("http://example.org:8080/a?b=1#c") == "http://example.org:8080/a?b=1#c"
    assert normalized_url("http://user:pw@Example.org:80/") == "http://user:pw@example.org/"


def test_a_repeat_of_get_capture_is_a_hit_until_forced_or_the_ttl_is_zero(
    live_api: TestClient, auth: dict[str, str], pages: PageServer
) -> None:
    url = pages.url + "/cache-get"
    first = capture(live_api, auth, url=url, width=700)
    assert first.headers["x-cache"] == "miss"
    again = capture(live_api, auth, url=url.upper().replace("HTTP://", "http://"), width=700)
    assert again.headers["x-cache"] == "miss"  # the path is part of the key, case and all
    hit = capture(live_api, auth, url=url, width=700)
    assert hit.headers["x-cache"] == "hit"
    assert hit.headers["x-snapshot-id"] == first.headers["x-snapshot-id"]
    assert hit.content == first.content
    assert page_hits(pages, "/cache-get") == 1
    metrics = live_api.get("/metrics").text
    assert 'snapshotd_capture_cache_total{result="hit"} 1.0' in metrics
    assert 'snapshotd_capture_cache_total{result="miss"} 2.0' in metrics

    assert capture(live_api, auth, url=url, width=700, force="1").headers["x-cache"] == "miss"
    assert capture(live_api, auth, url=url, width=700, cache_ttl=0).headers["x-cache"] == "miss"
    assert page_hits(pages, "/cache-get") == 3
    wrong = live_api.get("/api/v1/capture", params={"url": url, "cache_ttl": -1}, headers=auth)
    assert wrong.status_code == 400 and "cache_ttl" in wrong.json()["detail"]

    # The organization's own TTL: 0 turns reuse off, null goes back to the instance's.
    off = live_api.patch("/api/v1/org", json={"cache_ttl": 0}, headers=auth)
    assert off.status_code == 200 and off.json()["cache_ttl"] == 0
    assert capture(live_api, auth, url=url, width=700).headers["x-cache"] == "miss"
    live_api.patch("/api/v1/org", json={"cache_ttl": None}, headers=auth)
    assert capture(live_api, auth, url=url, width=700).headers["x-cache"] == "hit"
    too_long = live_api.patch("/api/v1/org", json={"cache_ttl": 10**9}, headers=auth)
    assert too_long.status_code == 400


def test_post_reuses_only_when_asked_and_says_so(
    live_api: TestClient, auth: dict[str, str], pages: PageServer
) -> None:
    body = {"url": pages.url + "/cache-post", "evidence": False}
    plain = [live_api.post("/api/v1/snapshots", json=body, headers=auth) for _ in range(2)]
    assert [each.status_code for each in plain] == [202, 202]
    assert {each.headers["x-cache"] for each in plain} == {"miss"}
    assert plain[0].json()["id"] != plain[1].json()["id"]
    assert plain[0].json()["cached"] is False

    first = live_api.post("/api/v1/snapshots", json={**body, "cache_ttl": 600}, headers=auth)
    assert first.status_code == 202 and first.headers["x-cache"] == "miss"
    wait_done(live_api, auth, first.json()["id"])
    reused = live_api.post("/api/v1/snapshots", json={**body, "cache_ttl": 600}, headers=auth)
    assert reused.status_code == 200, reused.text
    assert reused.headers["x-cache"] == "hit" and reused.json()["cached"] is True
    assert reused.json()["id"] == first.json()["id"]
    assert reused.json()["status"] == "success"

    forced = live_api.post(
        "/api/v1/snapshots", json={**body, "cache_ttl": 600, "force": True}, headers=auth
    )
    assert forced.status_code == 202 and forced.json()["id"] != first.json()["id"]
    with_callback = {**body, "cache_ttl": 600, "callback_url": pages.url + "/hook"}
    refused = live_api.post("/api/v1/snapshots", json=with_callback, headers=auth)
    assert refused.status_code == 400 and refused.json()["field"] == "callback_url"
    for wrong in ({"cache_ttl": "600"}, {"cache_ttl": -1}, {"force": "yes"}):
        assert (
            live_api.post("/api/v1/snapshots", json={**body, **wrong}, headers=auth).status_code
            == 400
        )


def test_hits_take_nothing_from_the_creation_limit(
    live_api: TestClient, auth: dict[str, str], pages: PageServer, db: Database
) -> None:
    settings = OrgSettings(db)
    settings.set_rate_limits(settings.find("acme").id, {"native": "1/3600"}, actor="test")
    url = pages.url + "/cache-limit"
    assert capture(live_api, auth, url=url).headers["x-cache"] == "miss"
    for _ in range(3):
        assert capture(live_api, auth, url=url).headers["x-cache"] == "hit"
    limited = live_api.get("/api/v1/capture", params={"url": url, "width": 900}, headers=auth)
    assert limited.status_code == 429


def test_kasisto_answers_from_the_cache_too(
    live_api: TestClient, auth: dict[str, str], pages: PageServer
) -> None:
    url = pages.url + "/cache-kasisto"
    got = [live_api.get("/create_snap", params={"url": url}, headers=auth) for _ in range(2)]
    assert [each.headers["x-cache"] for each in got] == ["miss", "hit"]
    posted = live_api.post("/create_snap", json={"url": url}, headers=auth)
    assert posted.status_code == 200 and posted.headers["x-cache"] == "hit"
    fresh = live_api.post("/create_snap", json={"url": url, "force": "true"}, headers=auth)
    assert fresh.headers["x-cache"] == "miss"
    assert page_hits(pages, "/cache-kasisto") == 2
    bad = live_api.get("/create_snap", params={"url": url, "cache_ttl": "soon"}, headers=auth)
    assert bad.status_code == 400 and bad.json()["status"] == "error"


def test_another_organization_never_reads_this_ones_cache(
    live_api: TestClient, auth: dict[str, str], pages: PageServer, db: Database
) -> None:
    url = pages.url + "/cache-tenancy"
    ours = capture(live_api, auth, url=url)
    rival = Accounts(db).create_token(org="rival", email="ops@rival.test", role="admin")
    theirs = capture(live_api, {"Authorization": f"Bearer {rival}"}, url=url)
    assert theirs.headers["x-cache"] == "miss"
    assert theirs.headers["x-snapshot-id"] != ours.headers["x-snapshot-id"]
    key = new_key(live_api, {"Authorization": f"Bearer {rival}"})
    linked = live_api.get(signed(key, url=url))
    assert linked.headers["x-cache"] == "hit"
    assert linked.headers["x-snapshot-id"] == theirs.headers["x-snapshot-id"]


def test_identical_requests_at_once_join_one_capture_on_both_databases(
    settings: Settings, any_db: Database
) -> None:
    """Twenty callers with a connection pool each (as twenty API processes would have) ask for
    the same capture while nothing runs it: one creates it, the others join it."""
    owner = build_services(settings, db=any_db)
    org_id = owner.org_settings.ensure("acme").id
    options = CaptureRequest(url="https://example.org/")
    url = any_db.engine.url.render_as_string(hide_password=False)
    databases = [Database.from_url(url) for _ in range(20)]
    start = threading.Barrier(len(databases))

    def ask(database: Database) -> tuple[str, bool]:
        snapshots = build_services(settings, db=database).snapshots
        start.wait()
        got = snapshots.create_cached(org_id, options, CacheAsk(), surface="native")
        return got.snapshot.id, got.cached

    try:
        with ThreadPoolExecutor(len(databases)) as pool:
            answers = list(pool.map(ask, databases))
    finally:
        for database in databases:
            database.dispose()
    assert len({snapshot_id for snapshot_id, _ in answers}) == 1
    assert sorted(cached for _, cached in answers) == [False] + [True] * 19
    forced = owner.snapshots.create_cached(org_id, options, CacheAsk(force=True), surface="native")
    assert not forced.cached and forced.snapshot.id != answers[0][0]


@pytest.fixture
def two_apis(
    settings: Settings, db: Database, blobs: FileBlobStore, worker: Any
) -> Iterator[tuple[str, str]]:
    """Two API servers over one database, each with its own connections: one runs a worker."""
    other = Database.from_url(settings.resolved_database_url)
    try:
        with (
            serving(create_app(settings, db=db, blobs=blobs, worker=worker)) as first,
            serving(create_app(settings, db=other, blobs=blobs)) as second,
        ):
            yield first, second
    finally:
        other.dispose()


def test_twenty_identical_requests_to_two_api_servers_make_one_capture(
    two_apis: tuple[str, str], auth: dict[str, str], pages: PageServer
) -> None:
    url = pages.url + "/cache-flight"

    def ask(index: int) -> httpx.Response:
        with httpx.Client(base_url=two_apis[index % 2], timeout=60) as client:
            return client.get("/api/v1/capture", params={"url": url}, headers=auth)

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(ask, range(20)))
    assert [each.status_code for each in answers] == [200] * 20
    assert len({each.headers["x-snapshot-id"] for each in answers}) == 1
    assert sorted(each.headers["x-cache"] for each in answers) == ["hit"] * 19 + ["miss"]
    assert page_hits(pages, "/cache-flight") == 1


def test_a_signed_link_in_an_img_tag_renders_in_chromium(
    live_url: str, auth: dict[str, str], pages: PageServer, settings: Settings
) -> None:
    key = httpx.post(f"{live_url}/api/v1/render-keys", json={}, headers=auth).json()
    link = live_url + signed(key, url=pages.url + "/", width=640, height=360)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=settings.chromium_path)
        try:
            page = browser.new_page()
            page.set_content(f'<img id="shot" src="{link}">', timeout=60_000)
            page.wait_for_function("document.getElementById('shot').complete", timeout=60_000)
            size = page.evaluate(
                "[document.getElementById('shot').naturalWidth,"
                " document.getElementById('shot').naturalHeight]"
            )
        finally:
            browser.close()
    assert size == [640, 360]
