"""The synthetic probes against real servers on loopback, and real Chromium for page loads."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from snapshotd.config import Settings
from snapshotd.engines.browser import BrowserPool
from snapshotd.engines.egress import EgressPolicy
from snapshotd.engines.guard import EgressGuard
from snapshotd.engines.probes import (
    MAX_BODY_BYTES,
    HttpResult,
    PageLoadResult,
    http_server,
    page_load,
)
from tests.pages import PageServer, page, routes

CHROMIUM = Settings().chromium_path
POLICY = EgressPolicy(["127.0.0.1/32"])
PHASES = ("dns_time", "connect_time", "ssl_time", "wait_time", "receive_time")

SITE = {
    "/": (
        "text/html",
        page(
            "<link rel='stylesheet' href='/style.css'><script src='/app.js'></script>"
            "<img src='/pic.svg'><img src='/missing.png'><p>site</p>"
        ),
    ),
    "/style.css": ("text/css", b"p { color: #080 }"),
    "/app.js": ("text/javascript", b"document.title = 'loaded';"),
    "/pic.svg": (
        "image/svg+xml",
        b"<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'>"
        b"<rect width='10' height='10' fill='#00f'/></svg>",
    ),
}


class SiteServer:
    """A page with subresources (one missing) and a body past the probe's limit, on 127.0.0.1."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.hits: list[tuple[str, dict[str, str]]] = []
        self.server_names: list[str | None] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                site.hits.append((self.path, dict(self.headers.items())))
                if self.path == "/big":
                    self.send_response(200)
                    self.send_header("content-length", str(MAX_BODY_BYTES * 2))
                    self.end_headers()
                    chunk = b"x" * 65536
                    try:
                        for _ in range(MAX_BODY_BYTES * 2 // len(chunk)):
                            self.wfile.write(chunk)
                    except OSError:
                        pass  # the probe stopped reading, as it should
                    return
                kind, body = SITE.get(self.path, ("text/plain", b"not found"))
                self.send_response(200 if self.path in SITE else 404)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            tls.sni_callback = lambda sock, name, ctx: self.server_names.append(name)
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> SiteServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def site() -> Iterator[SiteServer]:
    with SiteServer() as server:
        yield server


@asynccontextmanager
async def silent_server() -> AsyncIterator[tuple[int, list[asyncio.StreamWriter]]]:
    """Accepts connections and never answers; yields its port and the connections it got."""
    accepted: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await reader.read()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], accepted
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


def probe(url: str, **options: Any) -> HttpResult:
    options.setdefault("policy", POLICY)
    return asyncio.run(http_server(url, **options))


def test_a_200_is_timed_phase_by_phase(pages: PageServer) -> None:
    result = probe(pages.url + "/")

    assert result.available and result.error_type is None and result.error_details is None
    assert result.response_code == 200 and result.server_ip == "127.0.0.1"
    assert result.wire_size == len(routes({}, "")["/"][2]) and not result.truncated
    assert result.ssl_time == 0 and result.ssl_version is None and result.num_redirects == 0
    assert result.redirect_time == 0
    timings = [getattr(result, name) for name in (*PHASES, "response_time", "total_time")]
    assert all(type(value) is int and value >= 0 for value in timings)
    assert result.total_time is not None and result.response_time is not None
    assert all(result.total_time >= value for value in timings)
    assert sum(getattr(result, name) for name in PHASES) <= result.total_time
    assert result.response_time <= result.total_time
    assert isinstance(result.throughput, float) and result.throughput > 0

    data = json.loads(json.dumps(result.to_dict()))
    assert data["date"].endswith("Z") and data["total_time"] == result.total_time
    assert data["redirect_time"] == 0 and data["error_type"] is None


def test_a_redirect_chain_is_followed_and_every_hop_counted(pages: PageServer) -> None:
    chain = pages.url + "/redirect?" + urlencode({"to": "/redirect?" + urlencode({"to": "/"})})
    result = probe(chain)
    assert result.available and result.response_code == 200
    assert result.num_redirects == 2
    assert result.redirect_time is not None and result.response_time is not None
    assert 0 <= result.redirect_time <= result.response_time

    unfollowed = probe(chain, follow_redirects=False)
    assert unfollowed.available and unfollowed.response_code == 302
    assert unfollowed.num_redirects == 0

    too_many = probe(chain, max_redirects=1)
    assert too_many.error_type == "HTTP" and "redirects" in (too_many.error_details or "")


def test_a_redirect_to_a_refused_address_is_never_connected(
    pages: PageServer, canary: PageServer
) -> None:
    result = probe(pages.url + "/redirect?" + urlencode({"to": canary.url + "/"}))
    assert result.error_type == "Egress" and "loopback" in (result.error_details or "")
    assert result.num_redirects == 1 and result.response_code is None
    assert canary.hits == []


def test_a_404_is_an_error_unless_it_is_the_desired_status(pages: PageServer) -> None:
    missing = probe(pages.url + "/missing")
    assert missing.error_type == "HTTP" and missing.response_code == 404
    assert missing.error_details == "status 404, expected 2xx or 3xx"
    assert missing.wire_size == len(b"not found") and missing.total_time is not None

    wanted = probe(pages.url + "/missing", desired_status="404")
    assert wanted.available and wanted.response_code == 404
    assert probe(pages.url + "/", desired_status="404").error_type == "HTTP"


def test_method_headers_body_and_user_agent_are_sent(pages: PageServer) -> None:
    result = probe(
        pages.url + "/hook",
        method="post",
        headers=["X-Probe: yes"],
        body='{"a": 1}',
        user_agent="probe/1.0",
    )
    assert result.available
    method, path, headers, body = pages.hits[-1]
    assert (method, path, body) == ("POST", "/hook", b'{"a": 1}')
    assert headers["X-Probe"] == "yes" and headers["User-Agent"] == "probe/1.0"
    assert headers["Host"] == pages.url.removeprefix("http://")
    with pytest.raises(ValueError):
        probe(pages.url + "/", headers=["no colon"])


def test_a_name_that_does_not_resolve_is_a_dns_error() -> None:
    result = probe("http://no-such-host.invalid/")
    assert result.error_type == "DNS" and "no-such-host.invalid" in (result.error_details or "")
    assert result.dns_time is None and result.connect_time is None
    assert result.server_ip is None and result.total_time is not None


def test_a_refused_port_is_a_connect_error() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound but not listening: connections are refused
        result = probe(f"http://127.0.0.1:{closed.getsockname()[1]}/")
    assert result.error_type == "Connect" and result.error_details
    assert result.server_ip == "127.0.0.1" and isinstance(result.dns_time, int)
    assert result.connect_time is None and result.wait_time is None


def test_a_server_that_never_answers_times_out_within_the_limit() -> None:
    async def scenario() -> tuple[HttpResult, float, int]:
        async with silent_server() as (port, accepted):
            started = time.monotonic()
            result = await http_server(f"http://127.0.0.1:{port}/", policy=POLICY, timeout_s=1)
            return result, time.monotonic() - started, len(accepted)

    result, elapsed, connections = asyncio.run(scenario())
    assert result.error_type == "Timeout" and elapsed < 2
    assert connections == 1 and isinstance(result.connect_time, int)
    assert result.wait_time is None and result.response_code is None


def test_a_refused_address_is_reported_and_never_connected() -> None:
    async def scenario() -> tuple[HttpResult, int]:
        async with silent_server() as (port, accepted):
            result = await http_server(f"http://127.0.0.1:{port}/", policy=EgressPolicy([]))
            await asyncio.sleep(0.1)
            return result, len(accepted)

    result, connections = asyncio.run(scenario())
    assert result.error_type == "Egress" and "loopback" in (result.error_details or "")
    assert connections == 0 and result.connect_time is None and not result.available


def test_the_body_is_read_up_to_the_limit(site: SiteServer) -> None:
    result = probe(f"http://127.0.0.1:{site.port}/big", timeout_s=30)
    assert result.available and result.truncated
    assert result.wire_size is not None and MAX_BODY_BYTES <= result.wire_size < MAX_BODY_BYTES * 2


def test_https_connects_to_the_checked_address_with_the_name_in_sni(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    with SiteServer(tls) as server:
        url = f"https://localhost:{server.port}/"
        result = probe(url)
        assert result.available and result.response_code == 200
        assert result.server_ip == "127.0.0.1" and server.server_names == ["localhost"]
        assert server.hits[-1][1]["Host"] == f"localhost:{server.port}"
        assert isinstance(result.ssl_time, int) and result.ssl_version in ("TLSv1.2", "TLSv1.3")
        assert result.ssl_cipher and result.total_time is not None
        assert result.total_time >= sum(getattr(result, name) for name in PHASES)

        strict = probe(url, verify_tls=True)
        assert strict.error_type == "SSL" and "certificate" in (strict.error_details or "").lower()
        assert strict.ssl_time is None and strict.response_code is None


def load_pages(*urls: str, timeout_s: float = 10.0) -> list[PageLoadResult]:
    async def scenario() -> list[PageLoadResult]:
        async with (
            EgressGuard(POLICY) as guard,
            BrowserPool(executable=CHROMIUM, proxy_url=guard.url, slots=1) as pool,
        ):
            return [await page_load(pool, guard, url, timeout_s=timeout_s) for url in urls]

    return asyncio.run(scenario())


def test_page_load_measures_the_page_and_its_objects(site: SiteServer) -> None:
    [result] = load_pages(f"http://127.0.0.1:{site.port}/")
    assert result.available and result.response_code == 200, result
    assert result.num_objects is not None and result.num_objects >= 4  # document + 3 found
    assert result.dom_load_time is not None and result.page_load_time is not None
    assert 0 < result.dom_load_time <= result.page_load_time
    assert result.response_time is not None and 0 < result.response_time <= result.dom_load_time
    assert result.total_size is not None and result.total_size > len(SITE["/"][1])
    assert result.num_errors == 1  # /missing.png
    data = json.loads(json.dumps(result.to_dict()))
    assert data["date"].endswith("Z") and data["num_objects"] == result.num_objects


def test_page_load_reports_refusals_timeouts_and_error_pages(
    pages: PageServer, canary: PageServer
) -> None:
    started = time.monotonic()
    refused, stalled, missing = load_pages(
        canary.url + "/", pages.url + "/hang-forever", pages.url + "/missing", timeout_s=2
    )
    assert refused.error_type == "Egress" and "loopback" in (refused.error_details or "")
    assert refused.response_code is None and refused.page_load_time is None
    assert canary.hits == []

    assert stalled.error_type == "Timeout" and stalled.response_code == 200
    assert stalled.page_load_time is None

    assert missing.error_type == "HTTP" and missing.response_code == 404
    assert missing.num_errors == 1
    assert time.monotonic() - started < 20
