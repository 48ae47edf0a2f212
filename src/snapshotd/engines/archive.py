"""The capture's web archive (WACZ): every exchange the HAR recorder saw, with its bodies.

Bodies come from inside Chromium, as the HAR does (the egress guard only tunnels https): when an
exchange finishes, `Network.getResponseBody` reads its body from the capture's CDP session at once
and concurrently, before the page goes on or closes, since Chromium evicts bodies it no longer
needs. Request bodies come with the request event, or from `Network.getRequestPostData`. A
redirect hop has no body.

The bodies are bounded by `max_bytes` per capture: an exchange whose body would pass it is kept
with its headers only, and the metadata's `archive` and the WACZ itself name what was left out.
The number of exchanges is the HAR recorder's own limit. Writing the archive (gzip, hashes, ZIP)
happens in a worker thread once the page is done; `engines/wacz.py` does it.
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import contextlib
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from playwright.async_api import CDPSession
from playwright.async_api import Error as PlaywrightError

from snapshotd import __version__
from snapshotd.engines import wacz
from snapshotd.engines.har import Exchange, HarRecorder

__all__ = ["DEFAULT_MAX_BYTES", "MEDIA_TYPE", "WebArchive"]

MEDIA_TYPE = wacz.MEDIA_TYPE
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
# What the metadata lists of the bodies left out; the WACZ's own notes list them all.
LISTED = 20
# The longest the capture waits, once the page is done, for bodies still being read.
SETTLE_SECONDS = 5.0
# What Chromium buffers for this session to read bodies from is the capture's limit, within this.
MAX_BUFFER = 256 * 1024 * 1024

SIZE_LIMIT = "past the size limit"
NOT_KEPT = "no longer held by the browser"
TOO_LATE = "not read before the capture ended"
UNFINISHED = "still loading when the page was captured"

log = logging.getLogger(__name__)


@dataclass
class _Body:
    data: bytes | None = None
    omitted: str | None = None
    request: bytes | None = None


class WebArchive:
    """Reads each finished exchange's body as the HAR recorder reports it (`finished` is its
    `on_finished`), then writes the WACZ when asked."""

    def __init__(self, cdp: CDPSession, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.cdp = cdp
        self.max_bytes = max(0, max_bytes)
        self.kept = 0
        self._reserved = 0
        self._bodies: dict[tuple[str, int], _Body] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def buffer_bytes(self) -> int:
        return min(self.max_bytes, MAX_BUFFER)

    def finished(self, exchange: Exchange) -> None:
        if exchange.response is None or self._closed:
            return
        body = self._bodies.setdefault((exchange.request_id, exchange.hop), _Body())
        estimate = exchange.decoded_length
        if _bodiless(exchange.method, int(exchange.response.get("status") or 0)):
            body.data, estimate = b"", -1  # nothing to ask Chromium for
        elif self.kept + self._reserved + estimate > self.max_bytes:
            body.omitted = SIZE_LIMIT
            estimate = -1
        else:
            self._reserved += estimate
        wants_post = exchange.post_data is None and exchange.body_size != 0
        if estimate >= 0 or wants_post:
            task = asyncio.ensure_future(self._read(exchange, body, estimate, wants_post))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _read(self, exchange: Exchange, body: _Body, estimate: int, post: bool) -> None:
        try:
            if post:
                body.request = await self._posted(exchange.request_id)
            if estimate < 0:
                return
            try:
                answer = await self.cdp.send(
                    "Network.getResponseBody", {"requestId": exchange.request_id}
                )
            except PlaywrightError:
                # A response with no body (a 204, a HEAD) has nothing to read.
                if exchange.decoded_length:
                    body.omitted = NOT_KEPT
                else:
                    body.data = b""
                return
            data = _decoded(answer, exchange.response or {})
            if not data and exchange.decoded_length:
                body.omitted = NOT_KEPT  # Chromium let go of it (an image it could not decode)
            elif self.kept + len(data) > self.max_bytes:
                body.omitted = SIZE_LIMIT
            else:
                self.kept += len(data)
                body.data = data
        except asyncio.CancelledError:
            body.omitted = body.omitted or TOO_LATE
            raise
        finally:
            if estimate >= 0:
                self._reserved -= estimate

    async def _posted(self, request_id: str) -> bytes | None:
        try:
            answer = await self.cdp.send("Network.getRequestPostData", {"requestId": request_id})
        except PlaywrightError:
            return None
        text = answer.get("postData", "")
        return base64.b64decode(text) if answer.get("base64Encoded") else text.encode()

    async def settle(self, timeout: float = SETTLE_SECONDS) -> None:
        """Waits for the bodies still being read; those not read within `timeout` are left out."""
        pending = set(self._tasks)
        if pending:
            _, late = await asyncio.wait(pending, timeout=timeout)
            for task in late:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*late, return_exceptions=True)

    async def package(
        self,
        recorder: HarRecorder,
        *,
        page_url: str,
        title: str,
        addresses: dict[str, list[str]],
    ) -> tuple[bytes | None, dict[str, Any]]:
        """The WACZ of every exchange that was answered, and the metadata's `archive`. An archive
        that cannot be written is left out, and the metadata says why: the capture stands
        without it."""
        # What finishes from here on is past the capture: it is not read, and is left out.
        self._closed = True
        await self.settle()
        records, omitted = [], []
        for exchange in recorder.exchanges:
            record = self._record(recorder, exchange, addresses)
            if record is None:
                continue
            records.append(record)
            if record.truncated:
                reason = self._bodies.get((exchange.request_id, exchange.hop), _Body()).omitted
                if reason is None:
                    reason = f"failed: {exchange.error}" if exchange.error else UNFINISHED
                omitted.append({"url": exchange.url, "reason": reason})
        notes = {
            "entries": len(records),
            "bytes": sum(len(each.body) for each in records),
            "max_bytes": self.max_bytes,
            "omitted": len(omitted),
            "exchanges_left_out": recorder.omitted,
        }
        first = recorder.exchanges[0].wall_time if recorder.exchanges else 0.0
        main = next((e for e in recorder.exchanges if e.url == page_url), None)
        page = wacz.Page(page_url, title, main.wall_time if main else first)
        summary = {**notes, "omitted_bodies": omitted[:LISTED]}
        try:
            data = await asyncio.to_thread(
                wacz.write_wacz,
                records,
                page,
                software=f"snapshotd {__version__}",
                notes={**notes, "omitted_bodies": omitted},
            )
        except Exception as error:
            log.exception("the web archive of %s could not be written", page_url)
            return None, {**summary, "error": f"not written: {error}"}
        return data, summary

    def _record(
        self, recorder: HarRecorder, exchange: Exchange, addresses: dict[str, list[str]]
    ) -> wacz.Record | None:
        wire = recorder.wire(exchange)
        status = int(wire.response.get("status") or 0)
        if not status:
            return None  # never answered: the HAR says why
        body = self._bodies.get((exchange.request_id, exchange.hop))
        if exchange.redirected_to is not None or _bodiless(exchange.method, status):
            # Nothing to leave out, though Chromium reports an unread fetch of one as canceled.
            data, truncated = b"", None
        elif body is not None and body.data is not None:
            data, truncated = body.data, None
        else:
            data = b""
            limited = body is not None and body.omitted == SIZE_LIMIT
            truncated = "length" if limited else "unspecified"
        used = addresses.get((urlsplit(exchange.url).hostname or "").strip("[]").lower())
        posted = exchange.post_data
        if posted is None and body is not None:
            posted = body.request
        return wacz.Record(
            url=exchange.url,
            method=exchange.method,
            request_headers=wire.request_headers,
            request_body=posted,
            protocol=str(wire.response.get("protocol", "")),
            status=status,
            reason=str(wire.response.get("statusText") or ""),
            response_headers=wire.response_headers,
            body=data,
            wall_time=exchange.wall_time,
            address=used[-1] if used else None,
            truncated=truncated,
        )


def _bodiless(method: str, status: int) -> bool:
    """Whether HTTP gives this answer no body: any answer to a HEAD, and a 1xx, 204 or 304."""
    return method.upper() == "HEAD" or status < 200 or status in (204, 304)


def _decoded(answer: dict[str, Any], response: dict[str, Any]) -> bytes:
    """The body's bytes. Chromium hands text over as a string it decoded with the response's
    charset; encoding it back with that charset gives the bytes the server sent."""
    body = answer.get("body", "")
    if answer.get("base64Encoded"):
        return base64.b64decode(body)
    charset = str(response.get("charset") or "utf-8")
    try:
        codecs.lookup(charset)
        return str(body).encode(charset)
    except (LookupError, UnicodeEncodeError):
        return str(body).encode()
