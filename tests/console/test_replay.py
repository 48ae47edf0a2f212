"""Browsing a capture's web archive in real Chromium: the ReplayWeb.page viewer served by
snapshotd itself reads a real WACZ (tests/wacz.py) through the console and through a share link,
and the archived page's own heading shows inside it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from playwright.sync_api import Browser, FrameLocator, Page, expect, sync_playwright

from snapshotd.config import Settings
from snapshotd.http.app import create_app
from snapshotd.services.accounts import Accounts
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from tests.console.conftest import ADMIN, add_snapshot, csp_refusals, org_id_of
from tests.console.test_browser import sign_in
from tests.servers import serving
from tests.wacz import add_archive, share_of

HEADING = "Quarterly figures as published (archived copy)"
ARCHIVED_URL = "https://news.example.org/figures"
# The viewer's service worker installs, then reads the archive by range requests.
REPLAY_MS = 60_000


@pytest.fixture
def server(settings: Settings, db: Database, blobs: FileBlobStore) -> Iterator[str]:
    with serving(create_app(settings, db=db, blobs=blobs)) as base:
        yield base


@pytest.fixture
def browser(settings: Settings) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=settings.chromium_path)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def archived(db: Database, blobs: FileBlobStore) -> str:
    """A page snapshot carrying a WACZ of a page whose heading is HEADING."""
    Accounts(db).create_token(org="acme", email=ADMIN, role="admin")
    snapshot_id = add_snapshot(db, blobs, org_id_of(db), url=ARCHIVED_URL)
    add_archive(
        db, blobs, snapshot_id, ARCHIVED_URL, f"<html><body><h1>{HEADING}</h1></body></html>"
    )
    return snapshot_id


def archived_page(page: Page) -> FrameLocator:
    """The archived page inside the viewer: the element's frame holds the viewer's app, whose
    own frame holds the page (Playwright's CSS pierces the open shadow roots on the way)."""
    return page.frame_locator("replay-web-page iframe").frame_locator("iframe")


def test_console_opens_the_archived_page_in_the_viewer(
    server: str, browser: Browser, db: Database, archived: str
) -> None:
    token = Accounts(db).create_token(org="acme", email=ADMIN, role="admin")
    context = browser.new_context()
    page = context.new_page()
    refused = csp_refusals(page)
    sign_in(page, server, token)

    page.goto(f"{server}/console/snapshots/{archived}")
    page.get_by_role("link", name="Browse the archived page").click()
    expect(page).to_have_url(f"{server}/console/snapshots/{archived}/replay")

    heading = archived_page(page).get_by_role("heading", name=HEADING)
    expect(heading).to_be_visible(timeout=REPLAY_MS)
    assert refused == []
    context.close()


def test_a_share_link_with_replay_opens_the_archived_page(
    server: str, browser: Browser, db: Database, archived: str
) -> None:
    share_id = share_of(db, archived, replay=True)
    context = browser.new_context()
    page = context.new_page()
    refused = csp_refusals(page)

    page.goto(f"{server}/s/{share_id}")
    page.get_by_role("link", name="Browse the archived page").click()
    expect(page).to_have_url(f"{server}/s/{share_id}/replay")

    heading = archived_page(page).get_by_role("heading", name=HEADING)
    expect(heading).to_be_visible(timeout=REPLAY_MS)
    # The address says where in the archive the visitor is, so it can be reopened there.
    expect(page).to_have_url(
        re.compile(r"/replay#.*url=" + re.escape(quote(ARCHIVED_URL, safe="")))
    )
    # With the worker installed, it refuses to open another site's archive on this origin.
    foreign = page.goto(f"{server}/replay/?source=http://localhost:9/elsewhere.wacz")
    assert foreign is not None and foreign.status == 403 and foreign.from_service_worker
    assert refused == []
    context.close()


def test_a_share_link_without_replay_offers_no_viewer(
    server: str, browser: Browser, db: Database, archived: str
) -> None:
    share_id = share_of(db, archived, replay=False)
    page = browser.new_page()
    page.goto(f"{server}/s/{share_id}")
    expect(page.get_by_role("link", name="Browse the archived page")).to_have_count(0)
    answer = page.goto(f"{server}/s/{share_id}/replay")
    assert answer is not None and answer.status == 404
    page.close()
