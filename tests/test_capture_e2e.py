"""End to end through the native API with an in-process worker and real Chromium."""

from __future__ import annotations

import hashlib
import io
import time
from typing import Any

from fastapi.testclient import TestClient
from PIL import Image

from snapshotd.config import Settings
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from snapshotd.store.models import Snapshot
from snapshotd.worker import Worker, WorkerThreads
from tests.pages import PageServer


def create(client: TestClient, auth: dict[str, str], **options: Any) -> dict[str, Any]:
    response = client.post("/api/v1/snapshots", headers=auth, json=options)
    assert response.status_code == 202, response.text
    return response.json()


def wait(
    client: TestClient, auth: dict[str, str], snapshot_id: str, limit: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        body = client.get(f"/api/v1/snapshots/{snapshot_id}", headers=auth).json()
        if body["status"] in ("success", "failed"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"snapshot {snapshot_id} did not finish: {body}")


def image_of(client: TestClient, auth: dict[str, str], snapshot_id: str) -> Image.Image:
    response = client.get(f"/api/v1/snapshots/{snapshot_id}/image", headers=auth)
    assert response.status_code == 200
    return Image.open(io.BytesIO(response.content))


def test_page_capture_with_evidence(
    live_api: TestClient, auth: dict[str, str], pages: PageServer
) -> None:
    created = create(live_api, auth, url=pages.url + "/", width=1280, height=800)
    done = wait(live_api, auth, created["id"])
    assert done["status"] == "success", done["status_message"]
    assert done["job"]["state"] == "complete" and done["job"]["attempts"] == 1

    image = image_of(live_api, auth, created["id"])
    assert image.format == "PNG" and image.size == (1280, 800)
    assert image.getpixel((5, 5))[:3] == (255, 255, 255)

    meta = done["metadata"]
    assert meta["requested_url"] == pages.url + "/"
    assert meta["final_url"] == pages.url + "/"
    assert meta["http_status"] == 200
    assert meta["resolved_ip"] == "127.0.0.1"
    assert meta["title"] == "snapshotd test page"
    assert meta["viewport"] == {"width": 1280, "height": 800, "device_scale_factor": 1}
    assert meta["user_agent"]["browser"]["name"] in ("HeadlessChrome", "Chrome")
    assert meta["user_agent"]["os"]["name"] == "Linux"
    assert meta["captured_at"].endswith("Z")

    artifacts = {a["role"]: a for a in done["artifacts"]}
    assert set(artifacts) == {"image", "html", "har", "wacz", "manifest"}
    assert artifacts["manifest"]["media_type"] == "application/json"
    assert (artifacts["image"]["width"], artifacts["image"]["height"]) == (1280, 800)
    for role, artifact in artifacts.items():
        response = live_api.get(artifact["href"], headers=auth)
        assert response.status_code == 200
        assert hashlib.sha256(response.content).hexdigest() == artifact["sha256"]
        assert response.headers["etag"] == f'"{artifact["sha256"]}"'
        assert response.headers["content-type"].startswith(artifact["media_type"].split(";")[0])
        again = live_api.get(
            artifact["href"], headers={**auth, "If-None-Match": response.headers["etag"]}
        )
        assert again.status_code == 304
        if role == "html":
            assert b"Hello from the test page" in response.content


def test_synchronous_capture_answers_image_bytes(
    live_api: TestClient, auth: dict[str, str], pages: PageServer
) -> None:
    response = live_api.get(
        "/api/v1/capture",
        params={"url": pages.url + "/", "width": 800, "height": 600},
        headers=auth,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).size == (800, 600)
    assert (
        live_api.get(
            "/api/v1/capture", params={"url": "file:///etc/passwd"}, headers=auth
        ).status_code
        == 400
    )


def test_element_capture_and_missing_selector(
    live_api: TestClient, auth: dict[str, str], pages: PageServer
) -> None:
    box = create(live_api, auth, url=pages.url + "/box", selector="#box", evidence=False)
    missing = create(
        live_api, auth, url=pages.url + "/box", selector="#nothing-here", timeout_ms=3000
    )
    done = wait(live_api, auth, box["id"])
    assert done["status"] == "success", done["status_message"]
    image = image_of(live_api, auth, box["id"])
    assert image.size == (120, 80)
    assert image.getpixel((60, 40))[:3] == (0, 0, 255)
    failed = wait(live_api, auth, missing["id"])
    assert failed["status"] == "failed"
    assert "#nothing-here" in failed["status_message"]
    assert failed["job"]["attempts"] == 1


def test_full_page_of_a_200000px_page_is_capped_and_marked(
    live_api: TestClient, auth: dict[str, str], pages: PageServer
) -> None:
    created = create(
        live_api, auth, url=pages.url + "/tall", full_page=True, width=400, evidence=False
    )
    done = wait(live_api, auth, created["id"])
    assert done["status"] == "success", done["status_message"]
    assert done["metadata"]["truncated"] is True
    assert image_of(live_api, auth, created["id"]).size == (400, 16384)


def test_denied_subresources_are_blocked_and_recorded(
    live_api: TestClient, auth: dict[str, str], pages: PageServer, canary: PageServer
) -> None:
    before = len(canary.hits)
    created = create(live_api, auth, url=pages.url + "/subresources", wait_until="networkidle")
    done = wait(live_api, auth, created["id"])
    assert done["status"] == "success", done["status_message"]
    blocked = {entry["url"] for entry in done["metadata"]["blocked_requests"]}
    assert canary.url + "/img.png" in blocked
    assert len(canary.hits) == before


def test_redirect_to_a_denied_address_fails_the_job(
    live_api: TestClient, auth: dict[str, str], pages: PageServer, canary: PageServer
) -> None:
    before = len(canary.hits)
    created = create(live_api, auth, url=f"{pages.url}/redirect?to={canary.url}/secret")
    done = wait(live_api, auth, created["id"])
    assert done["status"] == "failed"
    assert "egress guard refused" in done["status_message"]
    assert "127.0.0.2" in done["status_message"]
    assert len(canary.hits) == before


def test_busy_script_and_alert_loop_are_cut_off(
    live_api: TestClient, auth: dict[str, str], pages: PageServer
) -> None:
    busy = create(live_api, auth, url=pages.url + "/busy", timeout_ms=2000)
    alerts = create(live_api, auth, url=pages.url + "/alerts", timeout_ms=2000)
    for snapshot in (busy, alerts):
        done = wait(live_api, auth, snapshot["id"], limit=60)
        assert done["status"] == "failed"
        assert "did not answer" in done["status_message"]
    after = create(live_api, auth, url=pages.url + "/", evidence=False)
    assert wait(live_api, auth, after["id"])["status"] == "success"


def test_page_that_never_finishes_loading_is_captured_and_marked(
    live_api: TestClient, auth: dict[str, str], pages: PageServer
) -> None:
    created = create(
        live_api, auth, url=pages.url + "/hang-forever", timeout_ms=2000, evidence=False
    )
    done = wait(live_api, auth, created["id"])
    assert done["status"] == "success", done["status_message"]
    assert done["metadata"]["load_timed_out"] is True


def test_device_emulation_and_formats(
    live_api: TestClient, auth: dict[str, str], pages: PageServer
) -> None:
    phone = create(live_api, auth, url=pages.url + "/", device="iPhone 13", evidence=False)
    jpeg = create(live_api, auth, url=pages.url + "/", format="jpeg", quality=70, evidence=False)
    webp = create(
        live_api, auth, url=pages.url + "/", format="webp", width=640, height=480, evidence=False
    )
    pdf = create(live_api, auth, url=pages.url + "/", format="pdf", evidence=False)

    done = wait(live_api, auth, phone["id"])
    assert done["status"] == "success", done["status_message"]
    assert done["metadata"]["viewport"]["width"] == 390
    assert done["metadata"]["device"] == "iPhone 13"
    assert done["metadata"]["user_agent"]["os"]["name"] == "iOS"
    assert image_of(live_api, auth, phone["id"]).size == (390 * 3, 664 * 3)

    assert wait(live_api, auth, jpeg["id"])["status"] == "success"
    assert image_of(live_api, auth, jpeg["id"]).format == "JPEG"
    assert wait(live_api, auth, webp["id"])["status"] == "success"
    assert image_of(live_api, auth, webp["id"]).format == "WEBP"
    assert wait(live_api, auth, pdf["id"])["status"] == "success"
    document = live_api.get(f"/api/v1/snapshots/{pdf['id']}/pdf", headers=auth)
    assert (
        document.content.startswith(b"%PDF")
        and document.headers["content-type"] == "application/pdf"
    )


def test_request_shaping_options(
    live_api: TestClient, auth: dict[str, str], pages: PageServer
) -> None:
    echo = create(
        live_api,
        auth,
        url=pages.url + "/echo",
        user_agent="snapshotd-test-agent/1.0",
        headers={"X-Audit": "case-7"},
        cookies=[{"name": "session", "value": "abc123"}],
    )
    done = wait(live_api, auth, echo["id"])
    assert done["status"] == "success", done["status_message"]
    html = live_api.get(f"/api/v1/snapshots/{echo['id']}/html", headers=auth).text
    assert "user-agent: snapshotd-test-agent/1.0" in html
    assert "x-audit: case-7" in html
    assert "cookie: session=abc123" in html
    assert done["metadata"]["user_agent"]["string"] == "snapshotd-test-agent/1.0"

    shaped = create(
        live_api,
        auth,
        url=pages.url + "/shaping",
        hide_selectors=["#banner"],
        color_scheme="dark",
        wait_for_selector="#late",
        delay_ms=50,
    )
    done = wait(live_api, auth, shaped["id"])
    assert done["status"] == "success", done["status_message"]
    assert image_of(live_api, auth, shaped["id"]).getpixel((640, 700))[:3] == (0, 0, 0)
    html = live_api.get(f"/api/v1/snapshots/{shaped['id']}/html", headers=auth).text
    assert "arrived" in html


def test_https_to_a_denied_address_is_refused_at_connect(
    live_api: TestClient, auth: dict[str, str], pages: PageServer, canary: PageServer
) -> None:
    before = len(canary.hits)
    created = create(live_api, auth, url=f"{pages.url}/redirect?to=https://127.0.0.2:8443/")
    done = wait(live_api, auth, created["id"])
    assert done["status"] == "failed"
    assert "egress guard refused" in done["status_message"]
    assert len(canary.hits) == before


def test_a_job_whose_stored_options_no_longer_validate_fails_once_saying_why(
    api: TestClient,
    auth: dict[str, str],
    pages: PageServer,
    settings: Settings,
    db: Database,
    blobs: FileBlobStore,
) -> None:
    """Options stored under older, looser rules can never be captured: the job fails at its
    first attempt with the reason, instead of spending every attempt."""
    created = create(api, auth, url=pages.url + "/")
    with db.session() as session:
        row = session.get(Snapshot, created["id"])
        assert row is not None
        row.options = {**row.options, "width": 5}
    runner = Worker(settings, db, blobs)
    threads = WorkerThreads([runner])
    threads.start()
    try:
        done = wait(api, auth, created["id"])
    finally:
        threads.stop(timeout=30)
    assert done["status"] == "failed"
    assert "stored options are no longer valid" in done["status_message"]
    assert done["job"]["attempts"] == 1
