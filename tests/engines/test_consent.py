"""The `consent` capture option against real consent managers, served from node_modules as a site
would serve them, captured by real Chromium through the whole capture stack."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from snapshotd.config import DEFAULT_AUTOCONSENT_DIR, Settings
from snapshotd.engines.capture import CaptureOptions, CaptureResult
from snapshotd.engines.consent import QUIET_SECONDS, WAIT_SECONDS
from snapshotd.engines.stack import capture_stack
from snapshotd.errors import CaptureFailed
from tests.test_capture_e2e import create, image_of, wait

NODE_MODULES = DEFAULT_AUTOCONSENT_DIR.parents[1]
WHITE = b"\xff\xff\xff"

# Shows the page's cookies in the DOM, so the HTML evidence tells what the manager stored.
JAR = (
    "<pre id='jar' style='position:absolute;top:60px;left:8px;margin:0;color:#fff'></pre>"
    "<script>setInterval(() => { jar.textContent = decodeURIComponent(document.cookie) }, 20)"
    "</script>"
)


def _page(head: str, body: str = "") -> bytes:
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>shop</title>"
        "<style>body{margin:0;background:#fff;font-family:sans-serif}</style>"
        f"{head}</head><body><h1 style='margin:8px;font-size:20px'>A shop</h1>{JAR}{body}"
        "</body></html>"
    ).encode()


OSANO = _page(
    "<link rel='stylesheet' href='/node_modules/cookieconsent/build/cookieconsent.min.css'>"
    "<script src='/node_modules/cookieconsent/build/cookieconsent.min.js'></script>",
    "<script>window.cookieconsent.initialise({type: 'opt-in', position: 'bottom',"
    " palette: {popup: {background: '#202040'}, button: {background: '#f1d600'}}});</script>",
)

KLARO = _page(
    "<script>var klaroConfig = {storageMethod: 'cookie', cookieName: 'klaro', mustConsent: false,"
    " acceptAll: true, services: [{name: 'analytics', title: 'Analytics',"
    " purposes: ['analytics']}, {name: 'ads', title: 'Advertising', purposes: ['marketing']}]};"
    "</script><script defer src='/node_modules/klaro/dist/klaro.js'></script>"
)

VANILLA = _page(
    "<link rel='stylesheet' href='/node_modules/vanilla-cookieconsent/dist/cookieconsent.css'>"
    "<script src='/node_modules/vanilla-cookieconsent/dist/cookieconsent.umd.js'></script>",
    # The library keeps quiet for headless browsers unless told not to (hideFromBots).
    "<script>CookieConsent.run({hideFromBots: false,"
    " categories: {necessary: {enabled: true, readOnly: true},"
    " analytics: {}}, language: {default: 'en', translations: {en: {"
    " consentModal: {title: 'We use cookies', description: 'Choose what we may store.',"
    " acceptAllBtn: 'Accept all', acceptNecessaryBtn: 'Reject all',"
    " showPreferencesBtn: 'Manage'},"
    " preferencesModal: {title: 'Preferences', acceptAllBtn: 'Accept all',"
    " acceptNecessaryBtn: 'Reject all', savePreferencesBtn: 'Save', sections: []}}}}});"
    "</script>",
)

# A banner no rule knows by its own markup, but whose container is one the rules hide (Osano's
# hosted CMP): `hide` takes it away though nothing can be clicked.
UNKNOWN = _page(
    "",
    "<div class='osano-cm-window'><div class='osano-cm-dialog' style='position:fixed;bottom:0;"
    "left:0;right:0;height:160px;background:#c03030;color:#fff'>We use cookies.</div></div>",
)

PAGES = {
    "/osano": OSANO,
    "/klaro": KLARO,
    "/vanilla": VANILLA,
    "/plain": _page(""),
    "/unknown": UNKNOWN,
}
TYPES = {".js": "text/javascript", ".css": "text/css"}


class SiteServer:
    """The test pages, and the consent managers' files from node_modules beside them."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = unquote(self.path.split("?")[0])
                status, kind, body = 404, "text/plain", b"not found"
                if path in PAGES:
                    status, kind, body = 200, "text/html; charset=utf-8", PAGES[path]
                elif path.startswith("/node_modules/") and ".." not in path:
                    file = NODE_MODULES / path.removeprefix("/node_modules/")
                    if file.is_file():
                        status, body = 200, file.read_bytes()
                        kind = TYPES.get(file.suffix, "application/octet-stream")
                self.send_response(status)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def site() -> Iterator[SiteServer]:
    server = SiteServer()
    yield server
    server.close()


def _capture(settings: Settings, *options: CaptureOptions) -> list[CaptureResult]:
    async def scenario() -> list[CaptureResult]:
        async with capture_stack(settings, slots=1) as stack:
            return [await stack.engine.capture(each) for each in options]

    return asyncio.run(scenario())


def _image(result: CaptureResult) -> Image.Image:
    data = next(a.data for a in result.artifacts if a.role == "image")
    return Image.open(io.BytesIO(data)).convert("RGB")


def _html(result: CaptureResult) -> str:
    return next(a.data for a in result.artifacts if a.role == "html").decode()


def _banner(image: Image.Image) -> tuple[int, int, int, int]:
    """Where the banner is: the box around what is not white below the page's own heading."""
    lower = image.crop((0, 100, image.width, image.height))
    box = Image.eval(lower, lambda v: 255 - v).getbbox()
    assert box is not None, "the capture without the option shows no banner"
    left, top, right, bottom = box
    assert (right - left) * (bottom - top) > 20_000, "the banner is too small to be one"
    return left, top + 100, right, bottom + 100


def _white_share(image: Image.Image, box: tuple[int, int, int, int]) -> float:
    data = image.crop(box).tobytes()
    white = sum(1 for i in range(0, len(data), 3) if data[i : i + 3] == WHITE)
    return white / (len(data) // 3)


def _cookie(result: CaptureResult, name: str) -> str | None:
    jar = _html(result).split('<pre id="jar"', 1)[1].split(">", 1)[1].split("</pre>", 1)[0]
    for pair in jar.split("; "):
        key, _, value = pair.partition("=")
        if key == name:
            return value
    return None


def _assert_gone(before: CaptureResult, after: CaptureResult) -> None:
    box = _banner(_image(before))
    assert _white_share(_image(before), box) < 0.8
    # Osano's library leaves a small "Cookie Policy" tab behind once a choice is made.
    assert _white_share(_image(after), box) > 0.95, "the banner is still in the capture"


def test_osano_cookieconsent_is_answered_by_its_rule(settings: Settings, site: SiteServer) -> None:
    url = site.url + "/osano"
    plain, rejected, accepted, hidden = _capture(
        settings,
        CaptureOptions(url=url, delay_ms=1000),  # the banners fade in
        CaptureOptions(url=url, consent="reject"),
        CaptureOptions(url=url, consent="accept"),
        CaptureOptions(url=url, consent="hide"),
    )
    assert "consent" not in plain.metadata
    _assert_gone(plain, hidden)
    assert hidden.metadata["consent"]["method"] == "hidden"
    assert _cookie(hidden, "cookieconsent_status") is None
    for result, action, status in ((rejected, "reject", "deny"), (accepted, "accept", "allow")):
        _assert_gone(plain, result)
        record = result.metadata["consent"]
        assert record["action"] == action and record["handled"] is True, record
        assert record["cmp"] == "Complianz optin" and record["method"] == "clicked", record
        assert _cookie(result, "cookieconsent_status") == status


def test_klaro_is_answered_by_its_rule(settings: Settings, site: SiteServer) -> None:
    url = site.url + "/klaro"
    plain, rejected, accepted = _capture(
        settings,
        CaptureOptions(url=url, delay_ms=1000),  # the banners fade in
        CaptureOptions(url=url, consent="reject"),
        CaptureOptions(url=url, consent="accept"),
    )
    # Klaro's rule declines through Klaro's own script API, and accepts with its buttons.
    for result, action, wanted, method in (
        (rejected, "reject", False, "scripted"),
        (accepted, "accept", True, "clicked"),
    ):
        _assert_gone(plain, result)
        record = result.metadata["consent"]
        assert record["action"] == action and record["handled"] is True, record
        assert record["cmp"] == "Klaro" and record["method"] == method, record
        stored = json.loads(_cookie(result, "klaro") or "{}")
        assert stored == {"analytics": wanted, "ads": wanted}


def test_vanilla_cookieconsent_is_answered_by_its_rule(
    settings: Settings, site: SiteServer
) -> None:
    url = site.url + "/vanilla"
    plain, rejected, accepted, hidden = _capture(
        settings,
        CaptureOptions(url=url, delay_ms=1000),  # the banners fade in
        CaptureOptions(url=url, consent="reject"),
        CaptureOptions(url=url, consent="accept"),
        CaptureOptions(url=url, consent="hide"),
    )
    for result, action, categories in (
        (rejected, "reject", ["necessary"]),
        (accepted, "accept", ["necessary", "analytics"]),
    ):
        _assert_gone(plain, result)
        record = result.metadata["consent"]
        assert record["action"] == action and record["handled"] is True, record
        assert record["cmp"] == "cookieconsent3" and record["method"] == "clicked", record
        assert json.loads(_cookie(result, "cc_cookie") or "{}")["categories"] == categories
    # Hiding decides nothing: the banner is gone from the picture, and no choice was stored.
    _assert_gone(plain, hidden)
    record = hidden.metadata["consent"]
    assert record["cmp"] == "cookieconsent3" and record["handled"] is True, record
    assert record["method"] == "hidden" and _cookie(hidden, "cc_cookie") is None


def test_a_banner_without_a_rule_is_hidden(settings: Settings, site: SiteServer) -> None:
    url = site.url + "/unknown"
    plain, hidden, rejected = _capture(
        settings,
        CaptureOptions(url=url, delay_ms=1000),  # the banners fade in
        CaptureOptions(url=url, consent="hide"),
        CaptureOptions(url=url, consent="reject"),
    )
    for result in (hidden, rejected):
        _assert_gone(plain, result)
        record = result.metadata["consent"]
        assert record["handled"] is True and record["method"] == "hidden", record


def test_a_page_without_a_consent_manager_costs_little(
    settings: Settings, site: SiteServer
) -> None:
    url = site.url + "/plain"
    started = time.perf_counter()
    plain, asked = _capture(
        settings, CaptureOptions(url=url), CaptureOptions(url=url, consent="reject")
    )
    record = asked.metadata["consent"]
    assert record == {
        "cmp": None,
        "action": "reject",
        "handled": False,
        "method": None,
        "rules": record["rules"],
        "waited_ms": record["waited_ms"],
    }
    assert record["rules"].startswith("autoconsent ")
    assert QUIET_SECONDS * 1000 <= record["waited_ms"] < WAIT_SECONDS * 1000
    assert _image(plain).tobytes() == _image(asked).tobytes()
    assert time.perf_counter() - started < 30


def test_a_missing_rule_set_fails_the_capture_saying_why(
    settings: Settings, site: SiteServer, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"autoconsent_dir": str(tmp_path / "nowhere")})

    with pytest.raises(CaptureFailed, match="make deps"):
        _capture(settings, CaptureOptions(url=site.url + "/plain", consent="hide"))
    # Captures that do not ask for it are not affected.
    (result,) = _capture(settings, CaptureOptions(url=site.url + "/plain"))
    assert "consent" not in result.metadata


def test_the_native_api_records_what_was_done(
    live_api: TestClient, auth: dict[str, str], site: SiteServer
) -> None:
    created = create(live_api, auth, url=site.url + "/vanilla", consent="reject")
    done = wait(live_api, auth, created["id"])
    assert done["status"] == "success", done["status_message"]
    record = done["metadata"]["consent"]
    assert record["cmp"] == "cookieconsent3" and record["action"] == "reject", record
    assert record["handled"] is True and record["method"] == "clicked", record
    image = image_of(live_api, auth, created["id"]).convert("RGB")
    assert _white_share(image, (0, 100, image.width, image.height)) > 0.99
