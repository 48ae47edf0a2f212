"""The console's location pages through the ASGI app: the list, one location's settings form and
capture history, and the comparison of two captures. Locations and uploads are made through the
Clickwrap API; change detection runs through the evidence service, as after a worker's capture."""

from __future__ import annotations

import io
import re

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw
from playwright.sync_api import expect, sync_playwright

from snapshotd.config import Settings
from snapshotd.engines import diff
from snapshotd.http.app import create_app
from snapshotd.services.accounts import Accounts
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from snapshotd.store.models import Snapshot
from tests.console.conftest import (
    ADMIN,
    add_snapshot,
    csp_refusals,
    csrf_of,
    org_id_of,
    png,
    sign_in,
)
from tests.servers import serving

PERCENT = re.compile(r"<strong data-percent>([\d.]+) %</strong>")


def marked(box: tuple[int, int, int, int], size: tuple[int, int] = (320, 200)) -> bytes:
    """A blue image with a red box drawn on it."""
    image = Image.new("RGB", size, (30, 90, 200))
    ImageDraw.Draw(image).rectangle(box, fill=(200, 20, 20))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def create_location(client: TestClient, token: str, **fields: object) -> dict[str, object]:
    body = {"key": "terms", "name": "Terms of service", "capture_url": "https://shop.example/terms"}
    answer = client.post("/v1.1/locations", headers=bearer(token), json={**body, **fields})
    assert answer.status_code == 201, answer.text
    return answer.json()


def upload(client: TestClient, token: str, location_id: str, image: bytes) -> str:
    answer = client.post(
        f"/v1.1/locations/{location_id}/snapshots/upload",
        headers=bearer(token),
        files={"file": ("shot.png", image, "image/png")},
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["data"]["id"])


@pytest.fixture
def signed_in(client: TestClient, admin_token: str) -> str:
    return sign_in(client, admin_token)


def test_empty_list_says_how_to_create_one(client: TestClient, signed_in: str) -> None:
    page = client.get("/console/locations")
    assert page.status_code == 200
    assert "No locations yet" in page.text and "POST /v1.1/locations" in page.text
    assert 'aria-current="page">Locations' in page.text


def test_list_detail_history_and_comparison_of_uploads(
    client: TestClient, admin_token: str, signed_in: str
) -> None:
    location = create_location(
        client,
        admin_token,
        key="app-terms",
        name="App terms",
        location_type="mobile_app",
        application_id="com.acme.app",
        application_name="Acme",
        capture_url=None,
    )
    images = [marked((0, 0, 0, 0)), marked((10, 10, 109, 59)), marked((0, 0, 319, 99))]
    first, second, third = (upload(client, admin_token, str(location["id"]), i) for i in images)

    listing = client.get("/console/locations").text
    assert "App terms" in listing and f'/console/locations/{location["id"]}"' in listing
    assert '<th scope="col">Name</th>' in listing

    base = f"/console/locations/{location['id']}"
    detail = client.get(base).text
    order = [detail.index(f"/console/snapshots/{i}/thumbnail") for i in (third, second, first)]
    assert order == sorted(order), "the history is newest first, with thumbnails"
    assert f"{base}/compare?a={second}&amp;b={third}" in detail
    assert f"{base}/compare?a={first}&amp;b={second}" in detail
    assert client.get(f"/console/snapshots/{third}/thumbnail").status_code == 200

    # By default the latest capture against the one before it, as the diff engine counts it.
    compared = client.get(f"{base}/compare")
    assert compared.status_code == 200, compared.text
    expected = diff.compare(images[1], images[2]).changed_percent
    found = PERCENT.search(compared.text)
    assert found and float(found.group(1)) == expected
    assert f"{diff.compare(images[1], images[2]).changed_pixels:,} pixels" in compared.text

    # Any two, both ways round; the diff image is served as a PNG of the union canvas.
    chosen = client.get(f"{base}/compare", params={"a": third, "b": first, "mode": "overlay"})
    found = PERCENT.search(chosen.text)
    assert found and float(found.group(1)) == diff.compare(images[2], images[0]).changed_percent
    assert 'id="mode-overlay" name="mode" value="overlay" data-mode-choice checked' in chosen.text
    picture = client.get(f"{base}/compare/diff", params={"a": third, "b": first})
    assert picture.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(picture.content)).size == (320, 200)


def test_comparison_of_a_compared_pair_shows_the_recorded_change(
    client: TestClient, db: Database, blobs: FileBlobStore, admin_token: str, signed_in: str
) -> None:
    location = create_location(client, admin_token)
    org = org_id_of(db)
    ids = [
        add_snapshot(db, blobs, org, image=marked(box), url="https://shop.example/terms")
        for box in ((0, 0, 0, 0), (0, 0, 159, 199))
    ]
    with db.session() as session:
        for snapshot_id in ids:
            row = session.get(Snapshot, snapshot_id)
            assert row is not None
            row.location_id = str(location["id"])
    change = client.app.state.services.evidence.compare_with_previous(ids[1])  # type: ignore[attr-defined]
    assert change is not None

    base = f"/console/locations/{location['id']}"
    page = client.get(f"{base}/compare", params={"a": ids[0], "b": ids[1]})
    found = PERCENT.search(page.text)
    assert found and float(found.group(1)) == change["changed_percent"]
    assert "As recorded when the later capture was taken" in page.text
    assert f"{change['changed_percent']:g} % changed" in client.get(base).text


def test_bad_comparisons_answer_clearly(
    client: TestClient, admin_token: str, signed_in: str
) -> None:
    location = create_location(client, admin_token)
    base = f"/console/locations/{location['id']}"
    lonely = client.get(f"{base}/compare")
    assert lonely.status_code == 200 and "needs at least two captures" in lonely.text
    assert client.get(f"{base}/compare?a=snp_nope&b=snp_none").status_code == 404
    assert client.get(f"{base}/compare?mode=sideways").status_code == 400
    assert "No captures yet" in client.get(base).text


def test_manager_saves_settings_through_the_service_and_bad_values_are_shown(
    client: TestClient, admin_token: str, signed_in: str
) -> None:
    location = create_location(client, admin_token)
    base = f"/console/locations/{location['id']}"
    form = {
        "csrf": csrf_of(client.get(base).text),
        "name": "Terms (EU)",
        "description": "The EU terms page",
        "capture_url": "https://shop.example/eu/terms",
        "platform": "ios",
        "frequency": "weekly",
        "change_threshold": "2.5",
        "webhook_url": "",
    }
    saved = client.post(base, data=form, follow_redirects=False)
    assert saved.status_code == 303 and saved.headers["location"] == f"{base}?done=saved"
    stored = client.get(f"/v1.1/locations/{location['id']}", headers=bearer(admin_token)).json()
    assert stored["data"]["frequency"] == "weekly" and stored["data"]["platform"] == "ios"
    assert stored["data"]["change_threshold"] == 2.5 and stored["data"]["name"] == "Terms (EU)"
    assert "settings are saved" in client.get(f"{base}?done=saved").text

    for field, value, reason in (
        ("change_threshold", "lots", "percentage"),
        ("change_threshold", "250", "percentage"),
        ("frequency", "hourly", "frequency must be one of"),
        ("capture_url", "ftp://shop.example/", ""),
    ):
        refused = client.post(base, data={**form, field: value})
        assert refused.status_code == 400, (field, value, refused.text)
        assert 'role="alert"' in refused.text and reason in refused.text
        assert f'id="{field}" name="{field}"' in refused.text
        assert 'aria-invalid="true"' in refused.text
    published = client.post(f"{base}/publish", data={"csrf": form["csrf"]}, follow_redirects=False)
    assert published.status_code == 303
    assert "Publish</button>" not in client.get(base).text


def test_a_viewer_sees_no_form_and_a_forged_post_is_refused(
    client: TestClient, admin_token: str, viewer_token: str
) -> None:
    location = create_location(client, admin_token)
    base = f"/console/locations/{location['id']}"
    csrf = sign_in(client, viewer_token)
    page = client.get(base).text
    assert 'name="capture_url"' not in page and "Save settings" not in page
    forged = client.post(base, data={"csrf": csrf, "name": "Mine now", "frequency": "daily"})
    assert forged.status_code == 403 and "manager" in forged.text
    assert client.post(f"{base}/publish", data={"csrf": csrf}).status_code == 403
    no_token = client.post(base, data={"name": "Mine now"})
    assert no_token.status_code == 403 and "security token" in no_token.text
    stored = client.get(f"/v1.1/locations/{location['id']}", headers=bearer(admin_token)).json()
    assert stored["data"]["name"] == "Terms of service" and stored["data"]["status"] == "draft"


def test_another_organizations_location_is_not_found(
    client: TestClient, db: Database, admin_token: str, signed_in: str
) -> None:
    other = Accounts(db).create_token(org="globex", email="ops@globex.test", role="admin")
    theirs = create_location(client, other, key="secret")
    shot = upload(client, other, str(theirs["id"]), png((320, 200)))
    again = upload(client, other, str(theirs["id"]), marked((0, 0, 50, 50)))
    base = f"/console/locations/{theirs['id']}"
    for path in (
        base,
        f"{base}/compare",
        f"{base}/compare?a={shot}&b={again}",
        f"{base}/compare/diff?a={shot}&b={again}",
        "/console/locations/loc_unknown",
    ):
        answer = client.get(path)
        assert answer.status_code == 404, (path, answer.text)
        assert "Not found" in answer.text
    assert "secret" not in client.get("/console/locations").text
    csrf = csrf_of(client.get("/console").text)
    assert client.post(base, data={"csrf": csrf, "name": "x"}).status_code == 404


def test_compare_modes_switch_from_the_keyboard_in_chromium(
    settings: Settings, db: Database, blobs: FileBlobStore, admin_token: str
) -> None:
    with serving(create_app(settings, db=db, blobs=blobs)) as base:
        api = httpx.Client(base_url=base, headers=bearer(admin_token))
        made = api.post(
            "/v1.1/locations",
            json={"key": "t", "name": "Terms", "capture_url": "https://shop.example/terms"},
        )
        location_id = made.json()["id"]
        for image in (marked((0, 0, 0, 0)), marked((0, 0, 159, 99))):
            sent = api.post(
                f"/v1.1/locations/{location_id}/snapshots/upload",
                files={"file": ("shot.png", image, "image/png")},
            )
            assert sent.status_code == 201, sent.text
        api.close()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=settings.chromium_path)
            page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
            refused = csp_refusals(page)
            page.goto(f"{base}/console/locations/{location_id}")
            page.get_by_label("Email").fill(ADMIN)
            page.get_by_label("API token").fill(admin_token)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_role("link", name="Compare with previous").click()
            page.wait_for_load_state()  # the deferred script has bound the mode switches
            expect(page.get_by_role("status")).to_contain_text("24.998 % of pixels changed")
            side, overlay = (
                page.locator('[data-pane="side"]'),
                page.locator('[data-pane="overlay"]'),
            )
            expect(side).to_be_visible()
            expect(overlay).to_be_hidden()

            page.get_by_label("Side by side").focus()
            page.keyboard.press("ArrowRight")
            expect(page.get_by_label("Overlay")).to_be_checked()
            expect(overlay).to_be_visible()
            expect(side).to_be_hidden()
            assert "mode=overlay" in page.url
            over = page.locator("[data-over]")
            expect(over).to_have_css("opacity", "0.5")
            page.keyboard.press("Tab")
            expect(page.get_by_role("button", name="Compare")).to_be_focused()
            page.keyboard.press("Tab")
            expect(page.get_by_label("Opacity of the after image")).to_be_focused()
            page.keyboard.press("Home")
            expect(over).to_have_css("opacity", "0")
            page.keyboard.press("ArrowRight")
            expect(over).to_have_css("opacity", "0.05")
            diff_image = page.locator("figure.shot img")
            page.wait_for_function(
                "img => img.complete && img.naturalWidth === 320", arg=diff_image.element_handle()
            )
            wide = page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
            assert wide, "the page scrolls sideways at phone width"
            page.get_by_label("Overlay").focus()
            page.keyboard.press("ArrowLeft")
            expect(side).to_be_visible()
            browser.close()
        assert refused == []
