"""The Clickwrap-compatible `/v1.1` surface with a real worker and Chromium: locations, a triggered
capture polled to success, its signed download, a manual upload, archiving, the scheduler, and
the bad input the issue lists."""

from __future__ import annotations

import io
import json
import time
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from snapshotd.services.accounts import Accounts
from snapshotd.store.db import Database
from snapshotd.store.models import Snapshot, utcnow
from tests.pages import PageServer


def png(width: int = 40, height: int = 30) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), "#3366cc").save(out, format="PNG")
    return out.getvalue()


def wait_done(api: TestClient, auth: dict[str, str], location: str, snapshot: str) -> dict:
    deadline = time.monotonic() + 60
    while True:
        body = api.get(f"/v1.1/locations/{location}/snapshots/{snapshot}", headers=auth).json()
        if body["data"]["status"] != "processing":
            return body["data"]
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


def create(api: TestClient, auth: dict[str, str], **fields: Any) -> dict:
    answer = api.post("/v1.1/locations", headers=auth, json=fields)
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_a_curl_session_captures_uploads_and_archives(
    live_api: TestClient, auth: dict[str, str], pages: PageServer
) -> None:
    location = create(
        live_api,
        auth,
        name="Checkout terms",
        key="checkout-terms",
        capture_url=pages.url + "/",
        platform="desktop",
        frequency="never",
    )
    assert location["location_type"] == "web" and location["status"] == "draft"
    assert isinstance(location["account"], int) and location["published"] is False
    listed = live_api.get("/v1.1/locations", headers=auth).json()
    assert listed["total_count"] == 1 and listed["data"][0]["id"] == location["id"]
    assert listed["page"] == 1 and listed["has_more"] is False

    published = live_api.post(f"/v1.1/locations/{location['id']}/publish", headers=auth)
    assert published.json()["data"]["status"] == "published"

    triggered = live_api.post(f"/v1.1/locations/{location['id']}/snapshots/capture", headers=auth)
    assert triggered.status_code == 200, triggered.text
    started = triggered.json()["data"]
    assert started["status"] == "processing" and started["source"] == "triggered"
    assert started["snapshot_location"] == location["id"] and started["is_manual"] is False
    done = wait_done(live_api, auth, location["id"], started["id"])
    assert done["status"] == "success", done
    assert done["metadata"]["viewport"] == {"width": 1280, "height": 800}
    assert done["metadata"]["useragent"]["browser"]["name"]
    image = live_api.get(done["snapshot_download_url"].replace("http://testserver", ""))
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")

    uploaded = live_api.post(
        f"/v1.1/locations/{location['id']}/snapshots/upload",
        headers=auth,
        files={"file": ("shot.png", png(), "image/png")},
        data={"captured_time": "2026-01-02T03:04:05Z", "device_model": "Pixel 7"},
    )
    assert uploaded.status_code == 201, uploaded.text
    manual = uploaded.json()["data"]
    assert manual["source"] == "customer_provided" and manual["is_manual"] is True
    assert manual["status"] == "success" and manual["metadata"]["device_model"] == "Pixel 7"

    archived = live_api.post(
        f"/v1.1/locations/{location['id']}/snapshots/{manual['id']}/archive",
        headers=auth,
        json={"archived_reason": "superseded"},
    )
    assert archived.json() == {"data": {"id": manual["id"]}}
    again = live_api.get(f"/v1.1/locations/{location['id']}/snapshots/{manual['id']}", headers=auth)
    assert again.json()["data"]["archived"] is True
    assert again.json()["data"]["archived_reason"] == "superseded"
    page = live_api.get(f"/v1.1/locations/{location['id']}/snapshots?per_page=1", headers=auth)
    assert page.json()["total_count"] == 2 and page.json()["has_more"] is True


def test_a_scheduled_location_captures_on_its_own(
    live_api: TestClient, auth: dict[str, str], pages: PageServer, db: Database
) -> None:
    location = create(
        live_api,
        auth,
        name="Daily",
        key="daily",
        capture_url=pages.url + "/",
        frequency="daily",
        platform="ios",
    )
    live_api.post(f"/v1.1/locations/{location['id']}/publish", headers=auth)
    deadline = time.monotonic() + 30
    while True:  # the workers' scheduler starts it; nobody triggers it
        listed = live_api.get(f"/v1.1/locations/{location['id']}/snapshots", headers=auth).json()
        if listed["data"]:
            break
        assert time.monotonic() < deadline, "the scheduled capture did not start"
        time.sleep(0.2)
    worker = live_api.app.state.services.capture.runner
    assert worker is not None and worker.locations.due() == 0  # the next one is a day away
    snapshot = listed["data"][0]
    assert snapshot["source"] == "automated"
    done = wait_done(live_api, auth, location["id"], snapshot["id"])
    assert done["status"] == "success" and done["metadata"]["device_os"] == "iOS"


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("http://10.0.0.7/", 400),
        ("ftp://example.org/", 400),
        ("not a url", 400),
        ("\u0001", 400),
    ],
)
def test_a_denied_or_bad_url_is_refused_on_create(
    api: TestClient, auth: dict[str, str], url: str, status: int
) -> None:
    answer = api.post(
        "/v1.1/locations", headers=auth, json={"name": "x", "key": "x", "capture_url": url}
    )
    assert answer.status_code == status
    assert answer.json()["error"]["field"] == "capture_url"
    assert api.get("/v1.1/locations", headers=auth).json()["total_count"] == 0


def test_a_selector_that_matches_nothing_fails_the_capture_naming_it(
    live_api: TestClient, auth: dict[str, str], pages: PageServer
) -> None:
    location = create(
        live_api,
        auth,
        name="Terms box",
        key="terms-box",
        capture_url=pages.url + "/",
        selector="#no-such-terms",
    )
    started = live_api.post(f"/v1.1/locations/{location['id']}/snapshots/capture", headers=auth)
    done = wait_done(live_api, auth, location["id"], started.json()["data"]["id"])
    assert done["status"] == "failure" and "#no-such-terms" in done["status_message"]


def bomb() -> bytes:
    """A small PNG that claims a huge canvas: decoding it would take gigabytes."""
    out = io.BytesIO()
    Image.new("1", (30_000, 30_000)).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        (b"%PDF-1.4 not an image", 400),
        (b"GIF89a" + b"\0" * 100, 400),
        (png(), 201),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, 400),
    ],
)
def test_uploads_must_be_real_images(
    api: TestClient, auth: dict[str, str], payload: bytes, status: int
) -> None:
    location = create(api, auth, name="App", key="app", application_id="a", application_name="A")
    answer = api.post(
        f"/v1.1/locations/{location['id']}/snapshots/upload",
        headers=auth,
        files={"file": ("f", payload, "application/octet-stream")},
    )
    assert answer.status_code == status, answer.text
    expected = 1 if status == 201 else 0
    listed = api.get(f"/v1.1/locations/{location['id']}/snapshots", headers=auth).json()
    assert listed["total_count"] == expected


def test_an_expired_snapshot_is_not_listed(
    api: TestClient, auth: dict[str, str], db: Database
) -> None:
    location = create(api, auth, name="App", key="app", application_id="a", application_name="A")
    base = f"/v1.1/locations/{location['id']}/snapshots"
    kept, gone = (
        api.post(
            f"{base}/upload", headers=auth, files={"file": ("f.png", png(), "image/png")}
        ).json()["data"]["id"]
        for _ in range(2)
    )
    with db.session() as session:
        expired = session.get(Snapshot, gone)
        assert expired is not None
        expired.expires_at = utcnow() - timedelta(seconds=1)

    assert api.get(f"{base}/{gone}", headers=auth).status_code == 404
    listed = api.get(base, headers=auth).json()
    assert [each["id"] for each in listed["data"]] == [kept]
    assert listed["total_count"] == 1


def test_a_decompression_bomb_and_an_oversized_upload_are_refused(
    api: TestClient, auth: dict[str, str]
) -> None:
    location = create(api, auth, name="App", key="app", application_id="a", application_name="A")
    path = f"/v1.1/locations/{location['id']}/snapshots/upload"
    refused = api.post(path, headers=auth, files={"file": ("b.png", bomb(), "image/png")})
    assert refused.status_code == 400 and "pixels" in refused.json()["error"]["message"]
    huge = api.post(
        path, headers={**auth, "content-type": "image/png"}, content=png() + b"\0" * 5_000_000
    )
    assert huge.status_code == 413
    assert api.get(f"{path[:-7]}", headers=auth).json()["total_count"] == 0


def test_archived_locations_and_other_organizations(
    api: TestClient, auth: dict[str, str], db: Database, pages: PageServer
) -> None:
    location = create(api, auth, name="T", key="t", capture_url=pages.url + "/")
    lid = location["id"]
    assert api.post(f"/v1.1/locations/{lid}/archive", headers=auth).status_code == 400  # draft
    api.post(f"/v1.1/locations/{lid}/publish", headers=auth)
    archived = api.post(
        f"/v1.1/locations/{lid}/archive", headers=auth, json={"archived_reason": "x"}
    )
    assert archived.json()["data"]["archived"] is True
    capture = api.post(f"/v1.1/locations/{lid}/snapshots/capture", headers=auth)
    assert capture.status_code == 400 and "archived" in capture.json()["error"]["message"]
    assert api.delete(f"/v1.1/locations/{lid}", headers=auth).status_code == 400

    other = {
        "Authorization": "Bearer "
        + Accounts(db).create_token(org="rival", email="r@r.test", role="admin")
    }
    for method, path in (
        ("get", f"/v1.1/locations/{lid}"),
        ("post", f"/v1.1/locations/{lid}/snapshots/capture"),
        ("get", f"/v1.1/locations/{lid}/snapshots"),
    ):
        assert getattr(api, method)(path, headers=other).status_code == 404

    duplicate = api.post(
        "/v1.1/locations", headers=auth, json={"name": "T", "key": "t", "capture_url": pages.url}
    )
    assert duplicate.status_code == 409
    clone = api.post(f"/v1.1/locations/{lid}/clone", headers=auth)
    assert clone.status_code == 201 and clone.json()["key"] == "t-copy"
    assert clone.json()["status"] == "draft"
    viewer = {
        "Authorization": "Bearer "
        + Accounts(db).create_token(org="acme", email="v@a.test", role="viewer")
    }
    assert api.get("/v1.1/locations", headers=viewer).status_code == 200
    assert api.post("/v1.1/locations", headers=viewer, json={}).status_code == 403


def test_an_expired_download_link_is_gone(api: TestClient, auth: dict[str, str]) -> None:
    location = create(api, auth, name="App", key="app", application_id="a", application_name="A")
    uploaded = api.post(
        f"/v1.1/locations/{location['id']}/snapshots/upload",
        headers=auth,
        files={"file": ("shot.png", png(), "image/png")},
    ).json()["data"]
    link = uploaded["snapshot_download_url"].replace("http://testserver", "")
    assert api.get(link).status_code == 200
    expired = link.split("?")[0] + "?expires=1&sig=" + link.split("sig=")[1]
    assert api.get(expired).status_code in (403, 404, 410)
    forged = link[:-3] + "AAA"
    assert api.get(forged).status_code == 404
    # A signature with characters outside ASCII once failed the comparison itself with a 500.
    foreign = api.get(link.split("sig=")[0] + "sig=%C3%A9%01")
    assert foreign.status_code == 404, foreign.text
    assert foreign.json()["error"]["status"] == 404


def test_records_change_detection_and_the_change_webhook(
    live_api: TestClient, auth: dict[str, str], pages: PageServer
) -> None:
    location = create(
        live_api,
        auth,
        name="Terms",
        key="terms",
        capture_url=pages.url + "/",
        webhook_url=pages.url + "/hook",
        change_threshold=1.0,
    )
    lid = location["id"]

    def capture() -> dict:
        started = live_api.post(f"/v1.1/locations/{lid}/snapshots/capture", headers=auth)
        done = wait_done(live_api, auth, lid, started.json()["data"]["id"])
        assert done["status"] == "success", done
        deadline = time.monotonic() + 20  # the comparison follows the capture
        while "change" not in done["metadata"] and time.monotonic() < deadline:
            time.sleep(0.1)
            done = live_api.get(f"/v1.1/locations/{lid}/snapshots/{done['id']}", headers=auth)
            done = done.json()["data"]
        return done

    first = capture()
    assert "change" not in first["metadata"]  # nothing to compare with yet
    same = capture()
    assert same["metadata"]["change"]["changed"] is False
    assert same["metadata"]["change"]["changed_percent"] == 0.0
    live_api.patch(f"/v1.1/locations/{lid}", headers=auth, json={"capture_url": pages.url + "/box"})
    moved = capture()
    change = moved["metadata"]["change"]
    assert change["changed"] is True and change["changed_percent"] > 1.0
    assert change["previous"] == same["id"]
    diff = live_api.get(f"/api/v1/snapshots/{moved['id']}/diff", headers=auth)
    assert diff.status_code == 200 and diff.content.startswith(b"\x89PNG")

    def notified() -> list[tuple[dict[str, str], dict]]:
        # The page server is shared by the whole run: pick this location's events.
        events = [(h, json.loads(b)) for _m, path, h, b in pages.hits if path == "/hook"]
        return [(h, e) for h, e in events if e.get("data", {}).get("location") == lid]

    deadline = time.monotonic() + 30
    while not notified() and time.monotonic() < deadline:
        time.sleep(0.1)
    hooks = notified()
    assert len(hooks) == 1, "one change, one notification"
    headers, event = hooks[0]
    assert event["type"] == "location.changed" and event["data"]["changed"] is True
    assert {k.lower() for k in headers} >= {"webhook-id", "webhook-signature"}

    record = live_api.get(f"/v1.1/locations/{lid}/snapshots/{moved['id']}/record", headers=auth)
    assert record.status_code == 200 and record.headers["content-type"] == "application/pdf"
    assert record.content.startswith(b"%PDF")
    at = same["updated_time"]
    in_force = live_api.get(f"/v1.1/locations/{lid}/snapshots/record/{at}", headers=auth)
    assert in_force.status_code == 200 and same["id"] in in_force.headers["content-disposition"]
    before = live_api.get(
        f"/v1.1/locations/{lid}/snapshots/record/2001-01-01T00:00:00+00:00", headers=auth
    )
    assert before.status_code == 404


def test_a_deeply_nested_json_body_is_400(api: TestClient, auth: dict[str, str]) -> None:
    body = '{"name": ' + "[" * 100_000
    response = api.post("/v1.1/locations", headers=auth, content=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["status"] == 400 and "not valid JSON" in error["message"]
