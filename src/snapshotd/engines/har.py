"""A HAR 1.2 log of every HTTP exchange a capture made: the navigation, each redirect hop and every
subresource, with their headers, sizes and timings, but not their bodies.

It is recorded from inside Chromium, through the Network events of the capture's own CDP session:
the egress guard tunnels https, so it never sees a request, and only the browser knows when each
phase of an exchange began. The `ExtraInfo` events carry the headers as they went over the wire
(cookies included), which the plain events leave out; they arrive on their own schedule, so they
are kept per request and paired with the exchanges of that request in order (one per redirect
hop), as DevTools does.

The log is bounded: past `ENTRY_LIMIT` exchanges new ones are only counted, and the log's comment
and `omitted` say how many were left out.

The recorder keeps no bodies itself. A listener given as `on_finished` (the web archive,
`engines/archive.py`) hears of each exchange as it finishes, while Chromium still holds its body,
and reads the exchanges and their wire headers back through `exchanges` and `wire()`.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from playwright.async_api import CDPSession

from snapshotd import __version__

__all__ = ["ENTRY_LIMIT", "MEDIA_TYPE", "Exchange", "HarRecorder", "Wire"]

MEDIA_TYPE = "application/json"
ENTRY_LIMIT = 2000
PAGE_ID = "page_1"
REDACTED = "REDACTED"

# When the document's DOMContentLoaded and load events ended, in ms from the navigation's start;
# -1 for one that has not happened (a capture that did not wait for load).
_PAGE_TIMINGS = """(() => {
  const entry = performance.getEntriesByType('navigation')[0];
  if (!entry) return [-1, -1];
  return [entry.domContentLoadedEventEnd || -1, entry.loadEventEnd || -1];
})()"""


@dataclass
class Exchange:
    """One request and its response; a redirect ends one exchange and starts the next, under the
    same request id."""

    request_id: str
    hop: int
    url: str
    method: str
    headers: dict[str, str]
    body_size: int
    started: float  # the browser's monotonic clock, in seconds
    wall_time: float  # seconds since the epoch
    resource_type: str
    response: dict[str, Any] | None = None
    ended: float | None = None
    encoded_length: int | None = None
    decoded_length: int = 0
    redirected_to: str | None = None
    error: str | None = None
    from_cache: str | None = None
    post_data: bytes | None = None  # kept only for a listener that archives bodies


@dataclass(frozen=True)
class Wire:
    """An exchange's headers as they went over the network (the plain events' when Chromium kept
    no wire record), with what the capture request itself sent redacted."""

    request_headers: dict[str, str]
    response: dict[str, Any]
    response_headers: dict[str, str]
    head_text: str | None


@dataclass
class _Extras:
    requests: list[dict[str, Any]] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)


class HarRecorder:
    """Listens to one capture's Network events from `start()` until `har()` is asked."""

    def __init__(
        self,
        cdp: CDPSession,
        *,
        hidden_headers: Iterable[str] = (),
        hidden_cookies: Iterable[str] = (),
        limit: int | None = None,
        on_finished: Callable[[Exchange], None] | None = None,
        buffer_bytes: int = 0,
    ) -> None:
        """The values of `hidden_headers` and `hidden_cookies` (what the capture request itself
        sent, often credentials) are written as REDACTED: the log travels in shared bundles.
        `on_finished` is called with each exchange whose body has arrived; `buffer_bytes` is how
        much of the bodies this session's Network domain keeps for it to read."""
        self.cdp = cdp
        self.on_finished = on_finished
        self.buffer_bytes = buffer_bytes
        self.limit = ENTRY_LIMIT if limit is None else limit
        self.hidden_headers = {name.lower() for name in hidden_headers}
        self.hidden_cookies = set(hidden_cookies)
        self.omitted = 0
        self._exchanges: list[Exchange] = []
        self._open: dict[str, Exchange] = {}
        self._extras: defaultdict[str, _Extras] = defaultdict(_Extras)

    async def start(self) -> None:
        """Subscribes, then turns the Network domain on; call it before the page navigates."""
        handlers = {
            "requestWillBeSent": self._request,
            "requestWillBeSentExtraInfo": self._request_extra,
            "responseReceived": self._response,
            "responseReceivedExtraInfo": self._response_extra,
            "dataReceived": self._data,
            "requestServedFromCache": self._served_from_cache,
            "loadingFinished": self._finished,
            "loadingFailed": self._failed,
        }
        # Playwright's public `on` wraps each call to a handler: it inspects the handler's
        # signature and copies the event's parameters, every time. A page sends the recorder a
        # hundred events or more, so it listens on the session's own emitter underneath, which
        # hands over the parameters as parsed.
        emitter = getattr(self.cdp, "_impl_obj", self.cdp)
        for event, handler in handlers.items():
            emitter.on(f"Network.{event}", handler)
        # Bodies stay out of the log, so without a listener that archives them this session keeps
        # no second copy of each (Playwright's own session keeps what it needs).
        buffer = max(0, self.buffer_bytes)
        await self.cdp.send(
            "Network.enable", {"maxTotalBufferSize": buffer, "maxResourceBufferSize": buffer}
        )

    @property
    def entries(self) -> int:
        return len(self._exchanges)

    @property
    def exchanges(self) -> list[Exchange]:
        return list(self._exchanges)

    def _request(self, event: dict[str, Any]) -> None:
        request_id = event["requestId"]
        request = event["request"]
        previous = self._open.get(request_id)
        if previous is not None and "redirectResponse" in event:
            previous.response = event["redirectResponse"]
            previous.ended = event["timestamp"]
            previous.encoded_length = event["redirectResponse"].get("encodedDataLength")
            previous.redirected_to = request["url"]
        if not request["url"].startswith(("http:", "https:")):
            return
        if len(self._exchanges) >= self.limit:
            self.omitted += 1
            self._open.pop(request_id, None)
            return
        exchange = Exchange(
            request_id=request_id,
            hop=previous.hop + 1 if previous is not None else 0,
            url=request["url"] + request.get("urlFragment", ""),
            method=request["method"],
            headers=request.get("headers", {}),
            body_size=_posted_size(request),
            started=event["timestamp"],
            wall_time=event["wallTime"],
            resource_type=event.get("type", "Other"),
        )
        if self.on_finished is not None and request.get("hasPostData"):
            exchange.post_data = _posted_bytes(request)
        self._exchanges.append(exchange)
        self._open[request_id] = exchange

    def _request_extra(self, event: dict[str, Any]) -> None:
        if len(self._extras) < 2 * self.limit or event["requestId"] in self._extras:
            self._extras[event["requestId"]].requests.append(event)

    def _response_extra(self, event: dict[str, Any]) -> None:
        if len(self._extras) < 2 * self.limit or event["requestId"] in self._extras:
            self._extras[event["requestId"]].responses.append(event)

    def _response(self, event: dict[str, Any]) -> None:
        exchange = self._open.get(event["requestId"])
        if exchange is not None:
            exchange.response = event["response"]

    def _data(self, event: dict[str, Any]) -> None:
        exchange = self._open.get(event["requestId"])
        if exchange is not None:
            exchange.decoded_length += event.get("dataLength", 0)

    def _served_from_cache(self, event: dict[str, Any]) -> None:
        exchange = self._open.get(event["requestId"])
        if exchange is not None:
            exchange.from_cache = "memory"

    def _finished(self, event: dict[str, Any]) -> None:
        exchange = self._open.pop(event["requestId"], None)
        if exchange is not None:
            exchange.ended = event["timestamp"]
            exchange.encoded_length = int(event.get("encodedDataLength", 0))
            if self.on_finished is not None:
                self.on_finished(exchange)

    def _failed(self, event: dict[str, Any]) -> None:
        exchange = self._open.pop(event["requestId"], None)
        if exchange is not None:
            exchange.ended = event["timestamp"]
            exchange.error = event.get("errorText") or "failed"
            if event.get("canceled"):
                exchange.error = f"{exchange.error} (canceled)"

    async def har(
        self, *, title: str, browser_version: str, addresses: dict[str, list[str]]
    ) -> bytes:
        """The log as JSON bytes. `addresses` maps each host to the addresses the egress guard
        connected to for it: behind the guard, Chromium only knows the proxy's address."""
        on_content_load, on_load = await self._page_timings()
        entries = [self._entry(each, addresses) for each in self._exchanges]
        first = self._exchanges[0].wall_time if self._exchanges else datetime.now(UTC).timestamp()
        log: dict[str, Any] = {
            "version": "1.2",
            "creator": {"name": "snapshotd", "version": __version__},
            "browser": {"name": "Chromium", "version": browser_version},
            "pages": [
                {
                    "startedDateTime": _moment(first),
                    "id": PAGE_ID,
                    "title": title,
                    "pageTimings": {"onContentLoad": on_content_load, "onLoad": on_load},
                }
            ],
            "entries": entries,
            "omitted": self.omitted,
        }
        if self.omitted:
            log["comment"] = (
                f"{self.omitted} exchanges past the first {self.limit} were left out of this log"
            )
        # Compact: the C encoder writes it in a fraction of the time an indented dump takes.
        return json.dumps({"log": log}, ensure_ascii=False, separators=(",", ":")).encode()

    async def _page_timings(self) -> tuple[float, float]:
        answer = await self.cdp.send(
            "Runtime.evaluate", {"expression": _PAGE_TIMINGS, "returnByValue": True}
        )
        value = answer.get("result", {}).get("value") or [-1, -1]
        return round(value[0], 3), round(value[1], 3)

    def _redacted(self, headers: dict[str, str]) -> dict[str, str]:
        shown = {}
        for name, value in headers.items():
            if name.lower() in self.hidden_headers:
                value = REDACTED
            elif name.lower() == "cookie" and self.hidden_cookies:
                pairs = [pair.strip().partition("=") for pair in value.split(";")]
                value = "; ".join(
                    f"{key}={REDACTED if key in self.hidden_cookies else rest}" if equals else key
                    for key, equals, rest in pairs
                )
            shown[name] = value
        return shown

    def wire(self, exchange: Exchange) -> Wire:
        extras = self._extras.get(exchange.request_id, _Extras())
        response = exchange.response or {}
        sent = _nth(extras.requests, exchange.hop)
        received = _nth(extras.responses, exchange.hop)
        if received is not None and not response:
            # Answered, but refused to the page (a cross-origin fetch CORS did not allow): the
            # network's own record is all there is of the response.
            response = {"status": received.get("statusCode", 0), "headers": received["headers"]}
        elif received is not None and received.get("statusCode") != response.get("status"):
            received = None  # a hop the network never answered (an internal redirect)
        return Wire(
            request_headers=self._redacted((sent or {}).get("headers") or exchange.headers),
            response=response,
            response_headers=(received or {}).get("headers") or response.get("headers", {}),
            head_text=(received or {}).get("headersText"),
        )

    def _entry(self, exchange: Exchange, addresses: dict[str, list[str]]) -> dict[str, Any]:
        wire = self.wire(exchange)
        response = wire.response
        version = _http_version(response.get("protocol", ""))
        request_headers = wire.request_headers
        response_headers = wire.response_headers
        head_text = wire.head_text
        headers_size = len(head_text.encode("latin-1", "replace")) if head_text else -1
        encoded = exchange.encoded_length
        timings = _timings(exchange, response.get("timing"))
        host = urlsplit(exchange.url).hostname or ""
        entry: dict[str, Any] = {
            "pageref": PAGE_ID,
            "startedDateTime": _moment(exchange.wall_time),
            "time": round(sum(v for k, v in timings.items() if k != "ssl" and v > 0), 3),
            "request": {
                "method": exchange.method,
                "url": exchange.url,
                "httpVersion": version,
                "headers": _header_list(request_headers),
                "queryString": [
                    {"name": name, "value": value}
                    for name, value in parse_qsl(urlsplit(exchange.url).query, True)
                ],
                "cookies": _request_cookies(request_headers),
                "headersSize": -1,
                "bodySize": exchange.body_size,
            },
            "response": {
                "status": response.get("status", 0),
                "statusText": response.get("statusText", "") or (exchange.error or ""),
                "httpVersion": version,
                "headers": _header_list(response_headers),
                "cookies": _response_cookies(response_headers),
                "content": {
                    "size": exchange.decoded_length,
                    "mimeType": response.get("mimeType") or "x-unknown",
                },
                "redirectURL": exchange.redirected_to or _header(response_headers, "location"),
                "headersSize": headers_size,
                "bodySize": encoded - headers_size
                if encoded is not None and headers_size >= 0
                else -1,
                "_transferSize": encoded if encoded is not None else -1,
            },
            "cache": {},
            "timings": timings,
            "_resourceType": exchange.resource_type,
        }
        used = addresses.get(host.strip("[]").lower())
        if used:
            entry["serverIPAddress"] = used[-1]
        if response.get("connectionId"):
            entry["connection"] = str(response["connectionId"])
        if exchange.error:
            entry["_error"] = exchange.error
        elif exchange.ended is None:
            entry["_error"] = "unfinished when the page was captured"
        cached = exchange.from_cache or ("disk" if response.get("fromDiskCache") else None)
        if cached:
            entry["_fromCache"] = cached
        return entry


def _posted_size(request: dict[str, Any]) -> int:
    """The request body's size in bytes (Chromium hands the body over base64-encoded); -1 when
    Chromium did not pass it on (a body too large, or a stream)."""
    if not request.get("hasPostData"):
        return 0
    entries = request.get("postDataEntries")
    if not entries or any("bytes" not in each for each in entries):
        return -1
    return sum(len(base64.b64decode(each["bytes"])) for each in entries)


def _posted_bytes(request: dict[str, Any]) -> bytes | None:
    """The request body as sent, or None when Chromium did not pass it on with the event."""
    entries = request.get("postDataEntries")
    if not entries or any("bytes" not in each for each in entries):
        return None
    return b"".join(base64.b64decode(each["bytes"]) for each in entries)


def _nth(events: list[dict[str, Any]], index: int) -> dict[str, Any] | None:
    return events[index] if index < len(events) else None


def _moment(seconds: float) -> str:
    return (
        datetime.fromtimestamp(seconds, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _http_version(protocol: str) -> str:
    """The response's protocol as HAR writes it: `HTTP/1.1`, `h2`, `h3`; "" when unknown."""
    if protocol.lower().startswith("http/"):
        return protocol.upper()
    return protocol.lower()


def _header_list(headers: dict[str, str]) -> list[dict[str, str]]:
    # CDP joins repeated headers with newlines; HAR lists each value.
    return [
        {"name": name, "value": value}
        for name, joined in headers.items()
        for value in str(joined).split("\n")
    ]


def _header(headers: dict[str, str], name: str) -> str:
    return next((str(v) for k, v in headers.items() if k.lower() == name), "")


def _request_cookies(headers: dict[str, str]) -> list[dict[str, str]]:
    cookies = []
    for pair in _header(headers, "cookie").split(";"):
        name, equals, value = pair.strip().partition("=")
        if equals:
            cookies.append({"name": name, "value": value})
    return cookies


def _response_cookies(headers: dict[str, str]) -> list[dict[str, Any]]:
    cookies = []
    for line in _header(headers, "set-cookie").split("\n"):
        first, *attributes = line.split(";")
        name, equals, value = first.strip().partition("=")
        if not equals:
            continue
        cookie: dict[str, Any] = {"name": name, "value": value}
        for attribute in attributes:
            key, _, setting = attribute.strip().partition("=")
            key = key.lower()
            if key in ("path", "domain", "expires"):
                cookie[key] = setting
            elif key in ("httponly", "secure"):
                cookie["httpOnly" if key == "httponly" else "secure"] = True
        cookies.append(cookie)
    return cookies


def _timings(exchange: Exchange, timing: dict[str, float] | None) -> dict[str, float]:
    """HAR's phases in ms. Chromium's timing marks are ms after `requestTime`; -1 means the phase
    did not happen (a reused connection has no dns, connect or ssl)."""
    end = exchange.ended
    if not timing:
        elapsed = (end - exchange.started) * 1000 if end is not None else 0.0
        return {
            "blocked": -1,
            "dns": -1,
            "connect": -1,
            "ssl": -1,
            "send": 0,
            "wait": round(elapsed, 3),
            "receive": 0,
        }
    base = timing["requestTime"]
    queued = max(0.0, (base - exchange.started) * 1000)
    begun = next(
        mark
        for mark in (timing["dnsStart"], timing["connectStart"], timing["sendStart"], 0.0)
        if mark >= 0
    )
    headers_end = timing["receiveHeadersEnd"]
    received = (end - base) * 1000 - headers_end if end is not None else 0.0

    def span(start: str, stop: str) -> float:
        return round(timing[stop] - timing[start], 3) if timing[start] >= 0 else -1

    return {
        "blocked": round(queued + begun, 3),
        "dns": span("dnsStart", "dnsEnd"),
        "connect": span("connectStart", "connectEnd"),
        "ssl": span("sslStart", "sslEnd"),
        "send": round(max(0.0, timing["sendEnd"] - timing["sendStart"]), 3),
        "wait": round(max(0.0, headers_end - timing["sendEnd"]), 3),
        "receive": round(max(0.0, received), 3),
    }
