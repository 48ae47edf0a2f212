"""The real-world page options on every front end that captures: each takes them, each refuses a
bad one with a 400 in its own error shape naming the field, and nothing is queued."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from snapshotd.client import ServerError, SnapshotClient
from snapshotd.store.db import Database
from snapshotd.store.models import Job, Snapshot
from tests.pages import PageServer
from tests.test_capture_e2e import create, image_of, wait

PROBLEM = "application/problem+json"

BAD = [
    ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
    ({"locale": "xx-QQ"}, "locale"),
    ({"geolocation": {"latitude": 91, "longitude": 0}}, "geolocation"),
    ({"geolocation": {"latitude": 0, "longitude": -181}}, "geolocation"),
    ({"fail_on_status": ["5xx"]}, "fail_on_status"),
    ({"fail_on_status": ["599-500"]}, "fail_on_status"),
    ({"fail_on_status": [700]}, "fail_on_status"),
    ({"consent": "maybe"}, "consent"),
    ({"media": "tv"}, "media"),
]

# The same mistakes as a query string or a form writes them.
BAD_TEXT = [
    # A misspelt flag is refused, not read as false.
    ({"full_page": "ture"}, "full_page"),
    ({"block_ads": "maybe"}, "block_ads"),
    ({"force": "yep"}, "force"),
    ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
    ({"locale": "xx-QQ"}, "locale"),
    ({"geolocation": "91,0"}, "geolocation"),
    ({"geolocation": "48.8"}, "geolocation"),
    ({"fail_on_status": "404,5xx"}, "fail_on_status"),
    ({"consent": "maybe"}, "consent"),
]


def _nothing_queued(db: Database) -> None:
    with db.session() as session:
        assert session.query(Job).count() == 0
        assert session.query(Snapshot).count() == 0


@pytest.mark.parametrize(("fields", "name"), BAD)
def test_the_native_api_refuses_a_bad_option_naming_it(
    api: TestClient, auth: dict[str, str], db: Database, fields: dict[str, Any], name: str
) -> None:
    answer = api.post("/api/v1/snapshots", headers=auth, json={"url": "https://x.org/", **fields})
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == PROBLEM
    assert name in answer.json()["detail"]
    _nothing_queued(db)


@pytest.mark.parametrize(("fields", "name"), BAD_TEXT)
def test_the_capture_query_refuses_a_bad_option_naming_it(
    api: TestClient, auth: dict[str, str], db: Database, fields: dict[str, str], name: str
) -> None:
    answer = api.get("/api/v1/capture", headers=auth, params={"url": "https://x.org/", **fields})
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == PROBLEM and name in answer.json()["detail"]
    _nothing_queued(db)


@pytest.mark.parametrize(("fields", "name"), BAD)
def test_a_clickwrap_location_refuses_a_bad_capture_setting_naming_it(
    api: TestClient, auth: dict[str, str], db: Database, fields: dict[str, Any], name: str
) -> None:
    body = {"name": "Terms", "key": "terms", "capture_url": "https://x.org/", **fields}
    answer = api.post("/v1.1/locations", headers=auth, json=body)
    assert answer.status_code == 400, answer.text
    assert name in answer.json()["error"]["message"]
    assert api.get("/v1.1/locations", headers=auth).json()["total_count"] == 0


def test_a_clickwrap_location_keeps_its_page_options(api: TestClient, auth: dict[str, str]) -> None:
    body = {
        "name": "Terms",
        "key": "terms",
        "capture_url": "https://x.org/",
        "block_ads": True,
        "consent": "reject",
        "timezone": "Europe/Berlin",
        "fail_on_status": ["400-599"],
    }
    answer = api.post("/v1.1/locations", headers=auth, json=body)
    assert answer.status_code == 201, answer.text
    capture = answer.json()["capture"]
    assert capture["block_ads"] is True and capture["consent"] == "reject"
    assert capture["timezone"] == "Europe/Berlin" and capture["fail_on_status"] == ["400-599"]


def test_options_are_stored_as_asked_and_text_forms_read_alike(
    api: TestClient, auth: dict[str, str], db: Database
) -> None:
    asked = {
        "url": "https://x.org/",
        "block_ads": True,
        "block_trackers": True,
        "consent": "accept",
        "scroll_lazy": False,
        "freeze_animations": True,
        "reduced_motion": True,
        "media": "print",
        "forced_colors": True,
        "timezone": "Asia/Tokyo",
        "locale": "ja-JP",
        "geolocation": {"latitude": 35.68, "longitude": 139.69, "accuracy": 20.0},
        "fail_on_status": [404, "500-599"],
    }
    answer = api.post("/api/v1/snapshots", headers=auth, json=asked)
    assert answer.status_code == 202, answer.text
    with db.session() as session:
        stored = session.get(Snapshot, answer.json()["id"])
        assert stored is not None and stored.options == asked


def test_a_status_listed_fails_the_job_and_keeps_the_image(
    live_api: TestClient, auth: dict[str, str], pages: PageServer
) -> None:
    created = create(live_api, auth, url=pages.url + "/missing", fail_on_status=["400-499"])
    done = wait(live_api, auth, created["id"])
    assert done["status"] == "failed" and "HTTP 404" in done["status_message"]
    assert done["job"]["state"] == "failed" and done["job"]["attempts"] == 1
    assert done["metadata"]["http_status"] == 404
    assert image_of(live_api, auth, created["id"]).size == (1280, 800)
    answered = live_api.get(
        "/api/v1/capture",
        headers=auth,
        params={"url": pages.url + "/missing", "fail_on_status": "404"},
    )
    assert answered.status_code == 502 and "HTTP 404" in answered.json()["detail"]
    fine = create(live_api, auth, url=pages.url + "/missing", fail_on_status=[500])
    assert wait(live_api, auth, fine["id"])["status"] == "success"


def test_the_sdk_sends_the_options_both_ways(
    live_url: str, token: str, pages: PageServer, tmp_path: Path
) -> None:
    with SnapshotClient(base_url=live_url, token=token) as client:
        where = {"latitude": 52.52, "longitude": 13.405, "accuracy": 5}
        done = client.wait(
            client.create(
                pages.url + "/", timezone="Europe/Berlin", locale="de-DE", geolocation=where
            )
        )
        emulated = done.metadata["emulation"]
        assert emulated["timezone"] == "Europe/Berlin" and emulated["locale"] == "de-DE"
        assert emulated["geolocation"] == {"latitude": 52.52, "longitude": 13.405, "accuracy": 5}
        png = client.capture(pages.url + "/", geolocation=where, media="print", width=640)
        shot = tmp_path / "shot.png"
        shot.write_bytes(png)
        with Image.open(shot) as image:
            assert image.size == (640, 800)
        with pytest.raises(ServerError, match="HTTP 404"):
            client.capture(pages.url + "/missing", fail_on_status=[404, "500-599"])
