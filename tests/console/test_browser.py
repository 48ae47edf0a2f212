"""The console end to end in real Chromium, against a real server with an in-process worker that
captures pages served by the test itself."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from snapshotd.client import render_url
from snapshotd.config import Settings
from snapshotd.http.app import create_app
from snapshotd.services.accounts import Accounts
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from snapshotd.worker import Worker
from tests.console.conftest import ADMIN, VIEWER, csp_refusals
from tests.pages import PageServer
from tests.servers import serving

CAPTURE_SECONDS = 30_000


@pytest.fixture
def server(settings: Settings, db: Database, blobs: FileBlobStore, worker: Worker) -> Iterator[str]:
    with serving(create_app(settings, db=db, blobs=blobs, worker=worker)) as base:
        yield base


@pytest.fixture
def browser(settings: Settings) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=settings.chromium_path)
        try:
            yield launched
        finally:
            launched.close()


def sign_in(page: Page, base: str, token: str, email: str = "") -> None:
    page.goto(f"{base}/console")
    expect(page).to_have_url(f"{base}/console/sign-in?next=/console")
    if email:
        page.get_by_label("Email").fill(email)
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{base}/console")


def loaded(page: Page, selector: str) -> bool:
    return bool(page.eval_on_selector(selector, "img => img.complete && img.naturalWidth > 0"))


def test_capture_share_revoke_and_sign_out(
    server: str, browser: Browser, db: Database, pages: PageServer
) -> None:
    token = Accounts(db).create_token(org="acme", email=ADMIN, role="admin")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server)
    page = context.new_page()
    refused = csp_refusals(page)
    sign_in(page, server, token, ADMIN)

    # A capture, followed live on its page until the image is there.
    page.get_by_role("navigation").get_by_role("link", name="New capture").click()
    page.get_by_label("Page URL").fill(pages.url + "/")
    page.get_by_label("Full page").check()
    page.get_by_role("button", name="Capture").click()
    expect(page.get_by_role("status")).to_contain_text("The capture is queued")
    shot = page.locator("figure.shot img")
    expect(shot).to_be_visible(timeout=CAPTURE_SECONDS)
    expect(page.locator("#status")).to_have_text("Done")
    assert loaded(page, "figure.shot img")
    detail_url = page.url.split("?")[0]
    zoom = page.locator("[data-zoom]")
    zoom.click()
    expect(zoom).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_role("cell", name="manifest")).to_be_visible()

    # A second, slow capture shows up live in the grid and turns into a thumbnail.
    page.goto(f"{server}/console/new")
    page.get_by_label("Page URL").fill(pages.url + "/slow?s=1")
    page.get_by_role("button", name="Capture").click()
    slow_url = page.url.split("?")[0]
    page.goto(f"{server}/console")
    card = page.locator(f'li.card:has(a[href="{slow_url.removeprefix(server)}"])')
    expect(card.locator("[data-status-text]")).to_have_text("Done", timeout=CAPTURE_SECONDS)
    expect(card.locator("img")).to_be_visible()
    page.wait_for_function(
        "el => el.complete && el.naturalWidth > 0", arg=card.locator("img").element_handle()
    )
    expect(page.locator("li.card img")).to_have_count(2)

    # Share it, copy the link, and open it signed out.
    page.goto(detail_url)
    page.get_by_role("button", name="Create share link").click()
    expect(page.get_by_role("status")).to_contain_text("A share link was created")
    link_field = page.locator(".share input[readonly]")
    share_url = link_field.input_value()
    assert share_url.startswith(f"{server}/s/")
    copy = page.locator("button[data-copy]")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == share_url

    visitor = browser.new_context()
    anonymous = visitor.new_page()
    opened = anonymous.goto(share_url)
    assert opened is not None and opened.status == 200
    expect(anonymous.locator("figure img")).to_be_visible()
    assert loaded(anonymous, "figure img")

    # Revoke it: the visitor now gets the 410 page.
    page.get_by_role("button", name="Revoke").click()
    expect(page.get_by_role("status")).to_contain_text("The share link is revoked")
    again = anonymous.goto(share_url)
    assert again is not None and again.status == 410
    expect(anonymous.locator("h1")).to_have_text("Gone")
    visitor.close()

    # Sign out: the console asks to sign in again.
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_have_text("You are signed out.")
    page.goto(detail_url)
    expect(page).to_have_url(re.compile(r"/console/sign-in\?next=/console/snapshots/"))
    context.close()
    assert refused == []


def test_viewer_sees_no_write_controls_and_a_forged_post_is_refused(
    server: str, browser: Browser, db: Database, pages: PageServer
) -> None:
    admin = Accounts(db).create_token(org="acme", email=ADMIN, role="admin")
    viewer = Accounts(db).create_token(org="acme", email=VIEWER, role="viewer")
    context = browser.new_context(viewport={"width": 390, "height": 844})  # a phone
    page = context.new_page()
    sign_in(page, server, admin)
    page.goto(f"{server}/console/new")
    page.get_by_label("Page URL").fill(pages.url + "/")
    page.get_by_role("button", name="Capture").click()
    expect(page.locator("figure.shot img")).to_be_visible(timeout=CAPTURE_SECONDS)
    detail = page.url.split("?")[0]
    page.get_by_role("button", name="Sign out").click()

    sign_in(page, server, viewer, VIEWER)
    assert page.get_by_role("link", name="New capture").count() == 0
    page.goto(detail)
    expect(page.locator("figure.shot img")).to_be_visible()
    assert page.locator("form[method=post]").count() == 1  # only "Sign out"
    for name in ("Archive", "Place legal hold", "Create share link"):
        assert page.get_by_role("button", name=name).count() == 0
    assert page.get_by_role("link", name="Delete…").count() == 0
    wide = page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    assert wide, "the page scrolls sideways at phone width"

    # A forged archive POST from the viewer's own session, with a valid form token.
    token = page.locator("input[name=csrf]").first.input_value()
    refused = page.request.post(
        f"{detail}/archive", form={"csrf": token}, headers={"Origin": server}
    )
    assert refused.status == 403 and "viewer" in refused.text()
    page.goto(f"{server}/console?archived=only")
    expect(page.locator("li.card")).to_have_count(0)
    context.close()


def test_a_render_key_made_in_the_console_signs_links_an_img_tag_shows(
    server: str, browser: Browser, db: Database, pages: PageServer
) -> None:
    token = Accounts(db).create_token(org="acme", email=ADMIN, role="admin")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server)
    page = context.new_page()
    refused = csp_refusals(page)
    sign_in(page, server, token, ADMIN)

    page.get_by_role("navigation").get_by_role("link", name="Render keys").click()
    page.get_by_label("Name", exact=True).fill("docs site")
    page.get_by_role("button", name="Create render key").click()
    expect(page.get_by_role("heading", name="Render key docs site created")).to_be_visible()
    key_id = page.get_by_label("Key id", exact=True).input_value()
    secret = page.get_by_label("Secret", exact=True).input_value()
    example = page.locator("#example-tag").input_value()
    assert example.startswith(f'<img src="{server}/render/{key_id}/png?')
    copy = page.locator('button[data-copy="example-tag"]')
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == example

    # A page elsewhere shows a capture through a link signed with that secret.
    link = render_url(server, pages.url + "/", key_id=key_id, secret=secret, width=640, height=400)
    elsewhere = context.new_page()
    elsewhere.set_content(f'<img id="shot" src="{link}" alt="">')
    elsewhere.wait_for_function(
        "() => document.getElementById('shot').naturalWidth === 640", timeout=CAPTURE_SECONDS
    )

    page.get_by_role("button", name="Revoke docs site").click()
    expect(page.get_by_role("status")).to_contain_text("The render key is revoked")
    assert page.request.get(link).status == 403
    context.close()
    assert refused == []
