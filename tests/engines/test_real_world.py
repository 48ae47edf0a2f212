"""A real-world page captured as a person sees it: an ordinary browser identity, the time zone,
locale and location asked for, lazy content loaded, motion stopped, and the statuses that fail."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from snapshotd.config import Settings
from snapshotd.engines.capture import CaptureOptions, CaptureResult
from snapshotd.engines.stack import capture_stack
from snapshotd.services.capture_request import parse_request
from tests.pages import page


def _png(colour: tuple[int, int, int], size: tuple[int, int] = (200, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


# Prints what the page learns about its visitor, where the capture's HTML evidence can read it.
WHO_AM_I = page(
    "<pre id='facts'>waiting</pre><script>"
    "navigator.geolocation.getCurrentPosition((where) => {"
    "  document.getElementById('facts').textContent = JSON.stringify({"
    "    ua: navigator.userAgent, webdriver: navigator.webdriver,"
    "    brands: navigator.userAgentData.brands.map((b) => b.brand),"
    "    zone: Intl.DateTimeFormat().resolvedOptions().timeZone,"
    "    language: navigator.language,"
    "    latitude: where.coords.latitude, longitude: where.coords.longitude});"
    "  document.getElementById('facts').dataset.done = 'yes';"
    "}, (error) => { document.getElementById('facts').textContent = 'denied ' + error.code; });"
    "</script>"
)

LAZY = page(
    "<div style='height:6000px'>top</div>"
    "<img id='lazy' loading='lazy' src='/lazy.png' width='200' height='200'>"
    "<div style='height:3000px'></div>"
    "<div id='watched' style='width:200px;height:200px;background:#fff'></div>"
    "<script>new IntersectionObserver((seen) => { if (seen[0].isIntersecting)"
    " document.getElementById('watched').style.background = '#00f'; })"
    ".observe(document.getElementById('watched'));</script>"
)

MOVING = page(
    "<style>@keyframes spin { from { transform: rotate(0deg); background: #f00 }"
    " to { transform: rotate(360deg); background: #00f } }"
    " #spinner { width: 200px; height: 200px; margin: 50px; animation: spin 1.3s linear infinite }"
    " #fade { width: 200px; height: 50px; background: #0f0; transition: opacity 5s }"
    "</style><div id='spinner'></div><div id='fade'></div><input autofocus value='caret'>"
    "<script>requestAnimationFrame(() => { document.getElementById('fade').style.opacity = 0.1 })"
    "</script>"
)

MEDIA = page(
    "<style>#print, #calm, #forced { width: 100px; height: 100px; background: #fff;"
    " print-color-adjust: exact }"
    " @media print { #print { background: #0f0 !important } }"
    " @media (prefers-reduced-motion: reduce) { #calm { background: #00f } }"
    " @media (forced-colors: active) { #forced { outline: 50px solid CanvasText } }"
    "</style><div id='print'></div><div id='calm'></div><div id='forced'></div>"
)


class RealWorld:
    """The pages above on loopback; `hits` keeps each request's path and headers."""

    def __init__(self) -> None:
        self.hits: list[tuple[str, dict[str, str]]] = []
        files = {
            "/who": (200, "text/html", WHO_AM_I),
            "/lazy": (200, "text/html", LAZY),
            "/lazy.png": (200, "image/png", _png((255, 0, 0))),
            "/moving": (200, "text/html", MOVING),
            "/media": (200, "text/html", MEDIA),
            "/gone": (404, "text/html", page("<h1>Not found</h1>")),
        }
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                hits.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                status, media_type, body = files.get(self.path, (404, "text/plain", b"no"))
                self.send_response(status)
                self.send_header("content-type", media_type)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def paths(self) -> list[str]:
        return [path for path, _headers in self.hits]


@pytest.fixture(scope="module")
def site() -> Iterator[RealWorld]:
    server = RealWorld()
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def _capture(settings: Settings, *requests: dict[str, object]) -> list[CaptureResult]:
    """Each request (as a client would send it) captured in turn on one stack."""

    async def run() -> list[CaptureResult]:
        async with capture_stack(settings, slots=1) as stack:
            return [
                await stack.engine.capture(parse_request(request).options()) for request in requests
            ]

    return asyncio.run(run())


def _image(result: CaptureResult) -> Image.Image:
    [shot] = [artifact for artifact in result.artifacts if artifact.role == "image"]
    return Image.open(io.BytesIO(shot.data)).convert("RGB")


def _html(result: CaptureResult) -> str:
    [html] = [artifact for artifact in result.artifacts if artifact.role == "html"]
    return html.data.decode()


def test_the_page_sees_an_ordinary_browser_in_the_zone_language_and_place_asked_for(
    settings: Settings, site: RealWorld
) -> None:
    [told, plain] = _capture(
        settings,
        {
            "url": site.url + "/who",
            "timezone": "Asia/Tokyo",
            "locale": "fr-FR",
            "geolocation": {"latitude": 48.8566, "longitude": 2.3522, "accuracy": 10},
            "wait_for_selector": "#facts[data-done]",
        },
        {"url": site.url + "/who"},
    )
    html = _html(told)
    assert '"zone":"Asia/Tokyo"' in html and '"language":"fr-FR"' in html
    assert '"latitude":48.8566' in html and '"longitude":2.3522' in html
    assert '"webdriver":false' in html and "Headless" not in html
    assert '"brands":["Not:A-Brand","Chromium"]' in html
    ua = told.metadata["user_agent"]["string"]
    assert "Headless" not in ua and "Chrome/" in ua
    assert told.metadata["user_agent"]["browser"]["name"] == "Chrome"
    assert told.metadata["emulation"] == {
        "user_agent": "ordinary",
        "client_hints": True,
        "geolocation": {"latitude": 48.8566, "longitude": 2.3522, "accuracy": 10.0},
        "locale": "fr-FR",
        "timezone": "Asia/Tokyo",
    }
    headers = [headers for path, headers in site.hits if path == "/who"]
    assert headers[0]["accept-language"].startswith("fr-FR")
    assert "Headless" not in headers[0]["user-agent"] + headers[0]["sec-ch-ua"]
    # Without the options, the page is told no place: the permission is not granted.
    assert "denied 1" in _html(plain) and "Headless" not in _html(plain)


def test_a_user_agent_asked_for_is_sent_as_it_is(settings: Settings, site: RealWorld) -> None:
    asked = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0.0.0 Safari/537.36"
    [result] = _capture(settings, {"url": site.url + "/who", "user_agent": asked})
    assert result.metadata["user_agent"]["string"] == asked
    assert result.metadata["emulation"]["user_agent"] == "request"
    sent = [headers for path, headers in site.hits if path == "/who"][-1]
    assert sent["user-agent"] == asked and sent["sec-ch-ua-platform"] == '"Windows"'


def test_a_full_page_scrolls_through_lazy_content_before_the_picture(
    settings: Settings, site: RealWorld
) -> None:
    site.hits.clear()
    [unscrolled] = _capture(
        settings, {"url": site.url + "/lazy", "full_page": True, "scroll_lazy": False}
    )
    assert "/lazy.png" not in site.paths()
    assert "scroll" not in unscrolled.metadata
    [scrolled] = _capture(settings, {"url": site.url + "/lazy", "full_page": True})
    assert "/lazy.png" in site.paths()
    image = _image(scrolled)
    assert image.height >= 9200
    assert image.getpixel((100, 6100)) == (255, 0, 0)  # the lazy image, painted
    assert image.getpixel((100, 9300)) == (0, 0, 255)  # the observed section, shown
    facts = scrolled.metadata["scroll"]
    assert facts["steps"] >= 10 and facts["reached"] >= 9200 and facts["network_settled"]
    assert facts["images_waited_for"] >= 0 and not facts["images_timed_out"]


def test_frozen_animations_give_the_same_image_twice(settings: Settings, site: RealWorld) -> None:
    request = {"url": site.url + "/moving", "freeze_animations": True, "evidence": False}
    first, second = _capture(settings, request, {**request, "delay_ms": 700})
    assert _image(first).tobytes() == _image(second).tobytes()
    assert first.metadata["frozen"]["animations_stopped"] == 1
    assert first.metadata["frozen"]["animations_finished"] >= 1  # the opacity transition


def test_print_media_reduced_motion_and_forced_colours_reach_the_page_css(
    settings: Settings, site: RealWorld
) -> None:
    url = site.url + "/media"
    [plain, emulated, forced] = _capture(
        settings,
        {"url": url},
        {"url": url, "media": "print", "reduced_motion": True},
        {"url": url, "forced_colors": True},
    )
    assert _image(plain).getpixel((50, 50)) == (255, 255, 255)
    image = _image(emulated)
    assert image.getpixel((50, 50)) == (0, 255, 0)  # print
    assert image.getpixel((50, 150)) == (0, 0, 255)  # reduced motion
    assert emulated.metadata["emulation"]["media"] == "print"
    assert emulated.metadata["emulation"]["reduced_motion"] is True
    # Forced colours draw the outline in the system's text colour, over the page's own colours.
    assert _image(forced).getpixel((120, 250)) == (0, 0, 0)
    assert _image(plain).getpixel((120, 250)) == (255, 255, 255)
    assert forced.metadata["emulation"]["forced_colors"] is True


def test_a_status_listed_in_fail_on_status_fails_but_keeps_the_picture(
    settings: Settings, site: RealWorld
) -> None:
    [failed, passed] = _capture(
        settings,
        {"url": site.url + "/gone", "fail_on_status": [403, "500-599", "404"]},
        {"url": site.url + "/gone", "fail_on_status": "500-599"},
    )
    assert failed.failure is not None and "HTTP 404" in failed.failure
    assert {artifact.role for artifact in failed.artifacts} >= {"image", "html"}
    assert failed.metadata["http_status"] == 404
    assert passed.failure is None


def test_the_default_options_change_nothing_they_were_not_asked_to() -> None:
    options = parse_request({"url": "http://example.org/"}).options()
    assert options == CaptureOptions(url="http://example.org/")
    assert parse_request({"url": "http://x/", "full_page": True}).options().scroll_lazy
