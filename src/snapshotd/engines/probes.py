"""Synthetic probes: the HTTP server and page load tests of a ThousandEyes-style monitor.

`http_server` resolves each name through `EgressPolicy.resolve` and connects to exactly the address
the policy allowed, with the original name in the Host header and in TLS SNI (so certificates are
still checked against the name). Letting httpx resolve the name again would reopen the gap the
egress guard closes: a name can answer the check with a public address and the connect with a
private one. For the same reason the probe follows redirects itself, checking every hop. Phases are
timed with httpcore's `trace` extension; every duration is a difference of whole-millisecond marks
taken from one start, so the parts never add up to more than `total_time`.

`page_load` loads the page in a fresh context of the browser pool, whose Chromium goes through the
egress guard as captures do, and reads Navigation Timing and Resource Timing from the page.

Neither raises for a problem with the target: the result carries `error_type` and `error_details`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import urljoin, urlsplit

import anyio  # noqa: F401  httpcore imports it on first use; that would skew the first probe
import httpx
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Request, Response

from snapshotd.engines.browser import BrowserPool
from snapshotd.engines.egress import EgressPolicy, IPAddress
from snapshotd.engines.emulation import ordinary_user_agent
from snapshotd.engines.guard import DENIED_HEADER, EgressGuard
from snapshotd.errors import EgressDenied, InvalidURL
from snapshotd.timestamps import iso

__all__ = ["MAX_BODY_BYTES", "HttpResult", "PageLoadResult", "http_server", "page_load"]

MAX_BODY_BYTES = 10 * 1024 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Navigation failures other than refusals; behind the guard, Chromium does no DNS of its own.
_NET_ERRORS = {"ERR_TUNNEL_CONNECTION_FAILED": "Connect", "ERR_CERT_": "SSL", "ERR_SSL_": "SSL"}


class _Result:
    """What both result types share: availability and a JSON-safe dict."""

    date: datetime
    error_type: str | None

    @property
    def available(self) -> bool:
        return self.error_type is None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(cast(Any, self))
        data["date"] = iso(self.date)
        return data


@dataclass
class HttpResult(_Result):
    url: str
    date: datetime
    response_code: int | None = None
    server_ip: str | None = None
    num_redirects: int = 0
    redirect_time: int | None = None
    dns_time: int | None = None
    connect_time: int | None = None
    ssl_time: int | None = None
    wait_time: int | None = None
    receive_time: int | None = None
    response_time: int | None = None
    total_time: int | None = None
    wire_size: int | None = None
    throughput: float | None = None
    truncated: bool = False
    ssl_version: str | None = None
    ssl_cipher: str | None = None
    error_type: str | None = None
    error_details: str | None = None


@dataclass
class PageLoadResult(_Result):
    url: str
    date: datetime
    response_code: int | None = None
    response_time: float | None = None
    dom_load_time: int | None = None
    page_load_time: int | None = None
    num_objects: int | None = None
    total_size: int | None = None
    num_errors: int = 0
    error_type: str | None = None
    error_details: str | None = None


class _Failure(Exception):
    """A probe failure: (error_type, error_details)."""


@dataclass
class _Hop:
    """One request of a redirect chain: perf_counter marks, filled in as its phases finish."""

    url: str
    start: float
    method: str
    headers: list[tuple[str, str]]
    content: bytes | None
    https: bool = False
    ip: IPAddress | None = None
    resolved: float | None = None
    marks: dict[str, float] = field(default_factory=dict)
    tls: tuple[str, str] | None = None
    status: int | None = None
    size: int = 0
    truncated: bool = False
    body_end: float | None = None

    async def trace(self, name: str, info: dict[str, Any]) -> None:
        event = name.partition(".")[2]  # "connection.connect_tcp.started" -> "connect_tcp.started"
        self.marks.setdefault(event, time.perf_counter())
        if event == "start_tls.complete":
            tls = info["return_value"].get_extra_info("ssl_object")
            if tls is not None:
                self.tls = (tls.version(), tls.cipher()[0])

    def failure(self, exc: BaseException) -> _Failure:
        while (inner := exc.__cause__ or exc.__context__) is not None:
            exc = inner  # the OSError or SSLError under httpx's and anyio's wrappers
        message = str(exc) or type(exc).__name__
        if "connect_tcp.complete" not in self.marks:
            return _Failure("Connect", f"could not connect: {message}")
        if self.https and "start_tls.complete" not in self.marks:
            return _Failure("SSL", f"TLS handshake failed: {message}")
        if "send_request_body.complete" not in self.marks:
            return _Failure("Send", f"sending the request failed: {message}")
        return _Failure("Receive", f"receiving the response failed: {message}")

    def redirected(self, location: str) -> _Hop:
        url = urljoin(self.url, location)
        method, content, headers = self.method, self.content, self.headers
        if (self.status == 303 and method != "HEAD") or (
            self.status in (301, 302) and method == "POST"
        ):
            method, content = "GET", None
        if urlsplit(url).hostname != urlsplit(self.url).hostname:
            headers = [(n, v) for n, v in headers if n.lower() not in ("authorization", "cookie")]
        return _Hop(url, time.perf_counter(), method, headers, content)


def _parse_headers(lines: Sequence[str], user_agent: str | None) -> list[tuple[str, str]]:
    fields = [line.partition(":") for line in lines]
    if any(not colon or not name.strip() for name, colon, _ in fields):
        raise ValueError(f"headers must be 'Name: value' lines, not {list(lines)!r}")
    user_agent_field = [("User-Agent", user_agent)] if user_agent else []
    return [(name.strip(), value.strip()) for name, _, value in fields] + user_agent_field


async def _resolve(hop: _Hop, policy: EgressPolicy) -> httpx.URL:
    """Check the hop's URL, resolve its host through the policy, and give the URL to request."""
    try:
        policy.check_url(hop.url)
        url = httpx.URL(hop.url)
    except (InvalidURL, EgressDenied, httpx.InvalidURL) as exc:
        # A scheme or host the policy will not touch is a refusal, as it is in the guard.
        raise _Failure("Egress", str(exc)) from None
    hop.https = url.scheme == "https"
    port = url.port or (443 if hop.https else 80)
    try:
        hop.ip = await policy.resolve(url.raw_host.decode("ascii"), port)
    except EgressDenied as exc:
        raise _Failure("DNS" if exc.unresolved else "Egress", exc.detail) from None
    hop.resolved = time.perf_counter()
    return url.copy_with(host=str(hop.ip), port=port)


async def _request(
    client: httpx.AsyncClient, hop: _Hop, policy: EgressPolicy, follow: bool
) -> str | None:
    """Resolve, send one request and read its body; the Location to follow, if any."""
    target = await _resolve(hop, policy)
    url = httpx.URL(hop.url)
    extensions: dict[str, Any] = {"trace": hop.trace}
    if hop.https:
        extensions["sni_hostname"] = url.raw_host.decode("ascii")
    headers = hop.headers
    if not any(name.lower() == "host" for name, _ in headers):
        headers = [("Host", url.netloc.decode("ascii")), *headers]
    try:
        async with client.stream(
            hop.method, target, headers=headers, content=hop.content, extensions=extensions
        ) as response:
            hop.status = response.status_code
            location = response.headers.get("location")
            if follow and hop.status in _REDIRECTS and location:
                return location
            async for chunk in response.aiter_raw():
                hop.size += len(chunk)
                if hop.size >= MAX_BODY_BYTES:
                    hop.truncated = True
                    break
            hop.body_end = time.perf_counter()
    except httpx.HTTPError as exc:
        raise hop.failure(exc) from None
    return None


def _measure(result: HttpResult, hop: _Hop, t0: float, end: float) -> None:
    def ms(moment: float) -> int:
        return int((moment - t0) * 1000)

    def span(start: float | None, stop: float | None) -> int | None:
        return None if start is None or stop is None else ms(stop) - ms(start)

    marks = hop.marks
    first_byte = marks.get("receive_response_headers.complete")
    result.total_time = ms(end)
    result.redirect_time = ms(hop.start)
    result.server_ip = None if hop.ip is None else str(hop.ip)
    result.dns_time = span(hop.start, hop.resolved)
    result.connect_time = span(marks.get("connect_tcp.started"), marks.get("connect_tcp.complete"))
    if hop.https:
        result.ssl_time = span(marks.get("start_tls.started"), marks.get("start_tls.complete"))
    elif result.connect_time is not None:
        result.ssl_time = 0
    result.wait_time = span(marks.get("send_request_body.complete"), first_byte)
    result.response_time = None if first_byte is None else ms(first_byte)
    result.receive_time = span(first_byte, hop.body_end)
    result.response_code = hop.status
    if hop.tls is not None:
        result.ssl_version, result.ssl_cipher = hop.tls
    if hop.body_end is not None and first_byte is not None:
        result.wire_size, result.truncated = hop.size, hop.truncated
        seconds = hop.body_end - first_byte
        result.throughput = round(hop.size / seconds, 1) if seconds > 0 else None


async def http_server(
    url: str,
    *,
    policy: EgressPolicy,
    timeout_s: float = 5.0,
    follow_redirects: bool = True,
    max_redirects: int = 10,
    desired_status: str = "default",
    verify_tls: bool = False,
    method: str = "get",
    headers: Sequence[str] = (),
    body: str | None = None,
    user_agent: str | None = None,
) -> HttpResult:
    """One timed HTTP(S) request, redirects included. `desired_status` is "default" (any 2xx or
    3xx) or a status code; `headers` are "Name: value" lines. ValueError for malformed arguments;
    every failure of the target is reported in the result."""
    wanted = None if desired_status == "default" else int(desired_status)
    fields = _parse_headers(headers, user_agent)
    result = HttpResult(url=url, date=datetime.now(UTC))
    # No keep-alive: every hop opens (and times) its own connection, and a TLS connection made
    # for one name is never reused for another name that resolved to the same address.
    async with httpx.AsyncClient(
        verify=verify_tls,
        trust_env=False,
        proxy=None,
        timeout=None,
        limits=httpx.Limits(max_keepalive_connections=0),
    ) as client:
        t0 = time.perf_counter()
        hops = [_Hop(url, t0, method.upper(), fields, None if body is None else body.encode())]
        try:
            async with asyncio.timeout(timeout_s):
                while location := await _request(client, hops[-1], policy, follow_redirects):
                    if len(hops) > max_redirects:
                        raise _Failure("HTTP", f"more than {max_redirects} redirects")
                    hops.append(hops[-1].redirected(location))
        except _Failure as failure:
            result.error_type, result.error_details = failure.args
        except TimeoutError:
            result.error_type = "Timeout"
            result.error_details = f"no complete response within {timeout_s:g} s"
        _measure(result, hops[-1], t0, time.perf_counter())
    result.num_redirects = len(hops) - 1
    code = result.response_code or 0
    if result.available and not (200 <= code < 400 if wanted is None else code == wanted):
        result.error_type = "HTTP"
        expected = "2xx or 3xx" if wanted is None else str(wanted)
        result.error_details = f"status {code}, expected {expected}"
    return result


_TIMING = """async () => {
  const nav = () => performance.getEntriesByType("navigation")[0];
  // Playwright reports `load` as the event fires; loadEventEnd is set once its handlers ran.
  for (let i = 0; i < 100 && !nav().loadEventEnd; i++) await new Promise((f) => setTimeout(f));
  const doc = nav(), resources = performance.getEntriesByType("resource");
  const size = (entry) => entry.transferSize || entry.encodedBodySize || 0;
  const total = resources.reduce((sum, entry) => sum + size(entry), size(doc));
  const objects = resources.length + 1;
  return [doc.domContentLoadedEventEnd, doc.loadEventEnd, doc.responseStart, objects, total];
}"""


def _refusal(guard: EgressGuard, url: str, since: datetime) -> str | None:
    """The guard's reason for refusing `url`'s host during this load, if it did."""
    host = urlsplit(url).hostname or ""
    reasons = [d.reason for d in guard.denials if d.at >= since and d.host.lower() == host]
    return reasons[-1] if reasons else None


async def page_load(
    pool: BrowserPool, guard: EgressGuard, url: str, *, timeout_s: float = 10.0
) -> PageLoadResult:
    """Load `url` until its `load` event and read the page's own timing of it."""
    result = PageLoadResult(url=url, date=datetime.now(UTC))
    refused: list[str] = []  # main-document hops the guard may have refused
    facts: list[float] | None = None
    # The same ordinary browser identity a capture presents (engines/emulation.py).
    async with pool.context(user_agent=ordinary_user_agent(pool.user_agent)) as context:
        page = await context.new_page()

        def is_document(request: Request) -> bool:
            return request.is_navigation_request() and request.frame == page.main_frame

        def on_response(response: Response) -> None:
            if response.status >= 400:
                result.num_errors += 1
            if is_document(response.request):
                result.response_code = response.status
                if response.headers.get(DENIED_HEADER.lower()) == "denied":
                    refused.append(response.url)

        def on_failed(request: Request) -> None:
            result.num_errors += 1
            # Also how a refused https CONNECT shows; the guard's record tells the two apart.
            if is_document(request) and "ERR_TUNNEL_CONNECTION_FAILED" in (request.failure or ""):
                refused.append(request.url)

        page.on("response", on_response)
        page.on("requestfailed", on_failed)
        try:
            async with asyncio.timeout(timeout_s):
                await page.goto(url, wait_until="load", timeout=0)
                facts = await page.evaluate(_TIMING)
        except TimeoutError:
            result.error_type = "Timeout"
            result.error_details = f"the page did not finish loading within {timeout_s:g} s"
        except PlaywrightError as error:
            message = str(error).splitlines()[0].removeprefix("Page.goto: ")
            result.error_type = next(
                (kind for code, kind in _NET_ERRORS.items() if code in message), "Navigation"
            )
            result.error_details = message
    reason = _refusal(guard, refused[-1], result.date) if refused else None
    if reason is not None:
        # The guard's 403 is not the site's answer.
        result.response_code = None
        result.error_type = "DNS" if reason.startswith("could not resolve") else "Egress"
        result.error_details = f"the egress guard refused {refused[-1]}: {reason}"
    if facts is None or result.error_type is not None:
        return result
    dom, load, response, objects, size = facts
    result.dom_load_time, result.page_load_time = round(dom), round(load)
    result.response_time = round(response, 1)
    result.num_objects, result.total_size = int(objects), int(size)
    if result.response_code is not None and result.response_code >= 400:
        result.error_type = "HTTP"
        result.error_details = f"the page answered with status {result.response_code}"
    return result
