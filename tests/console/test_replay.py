"""Browsing a capture's web archive in real Chromium: the ReplayWeb.page viewer served by
snapshotd itself reads a real WACZ (tests/wacz.py) through the console and through a share link,
and the archived page's own heading shows inside it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import Browser, Frame, FrameLocator, Page, expect, sync_playwright

from snapshotd.config import Settings
from snapshotd.engines.capture import CaptureOptions
from snapshotd.http.app import create_app
from snapshotd.services.accounts import Accounts
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from tests.console.conftest import ADMIN, add_snapshot, csp_refusals, org_id_of
from tests.console.test_browser import sign_in
from tests.engines.test_archive import capture
from tests.pages import PageServer
from tests.servers import listening, serving
from tests.wacz import add_archive, share_of, store_archive

HEADING = "Quarterly figures as published (archived copy)"
ARCHIVED_URL = "https://news.example.org/figures"
# The viewer's service worker installs, then reads the archive by range requests.
REPLAY_MS = 60_000


@pytest.fixture
def servers(settings: Settings, db: Database, blobs: FileBlobStore) -> Iterator[tuple[str, str]]:
    """(the main origin, the replay origin): one server, reached as 127.0.0.1 and as localhost,
    two hosts to the browser and both secure contexts, so service workers run on each."""
    sock = listening()
    replay_origin = f"http://localhost:{sock.getsockname()[1]}"
    configured = settings.model_copy(update={"replay_origin": replay_origin})
    with serving(create_app(configured, db=db, blobs=blobs), sock=sock) as base:
        yield base, replay_origin


@pytest.fixture
def server(servers: tuple[str, str]) -> str:
    return servers[0]


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
    """The archived page, three frames down: the replay page frames the view page on the replay
    host, whose `<replay-web-page>` element frames the viewer's app, whose own frame holds the
    page (Playwright's CSS pierces the open shadow roots on the way)."""
    return (
        page.frame_locator("iframe.replay")
        .frame_locator("replay-web-page iframe")
        .frame_locator("iframe")
    )


def replayed_frame(page: Page) -> Frame:
    """The frame the archived page's own scripts run in."""
    return next(frame for frame in page.frames if "mp_/" + ARCHIVED_URL in frame.url)


# What a script of the archived page can learn by fetching: the status and the first bytes, or
# the error when the browser refuses to let it read the answer.
PROBE = """async (target) => {
  try {
    const answer = await fetch(target, { credentials: "include" });
    return { status: answer.status, text: (await answer.text()).slice(0, 2000) };
  } catch (error) {
    return { status: 0, text: String(error) };
  }
}"""


def test_console_opens_the_archived_page_on_the_replay_host(
    servers: tuple[str, str], browser: Browser, db: Database, archived: str
) -> None:
    server, replay_origin = servers
    token = Accounts(db).create_token(org="acme", email=ADMIN, role="admin")
    context = browser.new_context()
    page = context.new_page()
    refused = csp_refusals(page)
    sign_in(page, server, token)

    page.goto(f"{server}/console/snapshots/{archived}")
    page.get_by_role("link", name="Browse the archived page").click()
    expect(page).to_have_url(f"{server}/console/snapshots/{archived}/replay")
    expect(page.locator("iframe.replay")).to_have_attribute(
        "src", re.compile("^" + re.escape(f"{replay_origin}/replay/view?source="))
    )

    sent_cookies: list[str] = []
    context.on(
        "request",
        lambda request: (
            sent_cookies.append(request.url)
            if request.url.startswith(replay_origin) and request.header_value("cookie")
            else None
        ),
    )
    heading = archived_page(page).get_by_role("heading", name=HEADING)
    expect(heading).to_be_visible(timeout=REPLAY_MS)
    assert refused == []

    # The archived page's scripts run on the replay host, where the console's cookie is not
    # sent and the console is not served; the console's own origin does not let them read it.
    # In the replayed frame the viewer's worker answers from the archive; the view page's
    # requests reach the server.
    replayed = replayed_frame(page)
    assert replayed.url.startswith(f"{replay_origin}/replay/w/")
    view = next(f for f in page.frames if f.url.startswith(f"{replay_origin}/replay/view?"))
    for frame in (replayed, view):
        assert frame.evaluate("document.cookie") == ""
        for path in ("/console/", "/api/v1/snapshots", f"/console/snapshots/{archived}"):
            for origin in (replay_origin, server):
                seen = frame.evaluate(PROBE, origin + path)
                assert seen["status"] in (0, 404), (frame.url, origin + path, seen)
                assert ADMIN not in seen["text"] and "csrf" not in seen["text"], seen
    for path in ("/console/", "/api/v1/snapshots", "/s/x", "/static/console.css"):
        assert view.evaluate(PROBE, replay_origin + path) == {"status": 404, "text": "Not found"}
    assert sent_cookies == []
    assert context.cookies(replay_origin) == []
    context.close()


def test_a_share_link_with_replay_opens_the_archived_page(
    servers: tuple[str, str], browser: Browser, db: Database, archived: str
) -> None:
    server, replay_origin = servers
    share_id = share_of(db, archived, replay=True)
    context = browser.new_context()
    page = context.new_page()
    refused = csp_refusals(page)

    page.goto(f"{server}/s/{share_id}")
    page.get_by_role("link", name="Browse the archived page").click()
    expect(page).to_have_url(f"{server}/s/{share_id}/replay")

    heading = archived_page(page).get_by_role("heading", name=HEADING)
    expect(heading).to_be_visible(timeout=REPLAY_MS)
    assert replayed_frame(page).url.startswith(f"{replay_origin}/replay/w/")
    assert refused == []

    # With the worker installed, it refuses to open another site's archive on the replay host.
    viewer = context.new_page()
    foreign = viewer.goto(f"{replay_origin}/replay/?source=http://127.0.0.1:9/elsewhere.wacz")
    assert foreign is not None and foreign.status == 403 and foreign.from_service_worker
    context.close()


def test_a_real_capture_replays_from_its_own_archive(
    servers: tuple[str, str],
    browser: Browser,
    settings: Settings,
    db: Database,
    blobs: FileBlobStore,
    pages: PageServer,
) -> None:
    """The WACZ the capture engine wrote for a page (its stylesheet, image, fetches and a POST),
    not one made by hand, replays with the page's heading, and the page's script gets its
    fetched JSON from the archive (it sets the title from it)."""
    target = f"{pages.url}/archived"
    options = CaptureOptions(url=target, wait_until="networkidle")
    with ThreadPoolExecutor(1) as thread:  # this thread's loop is the sync browser's
        result = thread.submit(capture, settings, options).result()
    data = next(each.data for each in result.artifacts if each.role == "wacz")
    Accounts(db).create_token(org="acme", email=ADMIN, role="admin")
    snapshot_id = add_snapshot(db, blobs, org_id_of(db), url=target)
    store_archive(db, blobs, snapshot_id, data)
    server, _ = servers
    page = browser.new_page()
    page.goto(f"{server}/s/{share_of(db, snapshot_id, replay=True)}/replay")
    heading = archived_page(page).get_by_role("heading", name="archived")
    expect(heading).to_be_visible(timeout=REPLAY_MS)
    replayed = next(frame for frame in page.frames if "mp_/" + target in frame.url)
    replayed.wait_for_function("document.title === 'archived 3'", timeout=REPLAY_MS)
    page.close()


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


def test_without_a_replay_host_the_console_says_what_replay_needs(
    settings: Settings, db: Database, blobs: FileBlobStore, browser: Browser, archived: str
) -> None:
    token = Accounts(db).create_token(org="acme", email=ADMIN, role="admin")
    share_id = share_of(db, archived, replay=True)
    with serving(create_app(settings, db=db, blobs=blobs)) as server:
        context = browser.new_context()
        page = context.new_page()
        sign_in(page, server, token)
        page.goto(f"{server}/console/snapshots/{archived}")
        expect(page.get_by_role("link", name="Browse the archived page")).to_have_count(0)
        expect(page.locator("#replay-note")).to_contain_text("SNAPSHOTD_REPLAY_ORIGIN")
        expect(page.get_by_role("link", name="wacz")).to_have_count(1)

        answer = page.goto(f"{server}/console/snapshots/{archived}/replay")
        assert answer is not None and answer.status == 503
        expect(page.get_by_role("main")).to_contain_text("SNAPSHOTD_REPLAY_ORIGIN")
        answer = page.goto(f"{server}/s/{share_id}/replay")
        assert answer is not None and answer.status == 503
        expect(page.locator("body")).to_contain_text("host name of its own")
        context.close()
