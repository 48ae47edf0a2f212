"""The egress guard: an HTTP forward proxy (absolute-form HTTP and CONNECT) on 127.0.0.1 that
Chromium and the probes are pointed at. It resolves every name itself and connects to exactly the
address the policy checked, so a name that resolves differently on a second lookup gains nothing.

A capture that blocks ads or trackers gets a lane of its own: one more listener of the same guard,
on its own port, that a single browser context uses as its proxy. A lane applies the same egress
policy and, before it, a request filter; what the filter refuses is answered at once and never
resolved or connected to, and the lane keeps the list for the capture's metadata.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from urllib.parse import urlsplit

from snapshotd.engines.egress import EgressPolicy, IPAddress
from snapshotd.engines.lanes import Lane, RequestFilter
from snapshotd.errors import EgressDenied

__all__ = ["DENIED_HEADER", "Denial", "EgressGuard", "Lane", "RequestFilter"]

log = logging.getLogger(__name__)

DENIED_HEADER = "X-Egress-Guard"
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BAD_HEAD_BYTES = re.compile(rb"\x00|\r(?!\n)|(?<!\r)\n")
_AUTHORITY = re.compile(r"(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9._-]+)):([0-9]{1,5})")
_STATUS_LINE = re.compile(r"HTTP/1\.[01] ([1-5][0-9][0-9])(?: .*)?")
_HEAD_LIMIT = 64 * 1024
_CHUNK = 64 * 1024
_CLOSE_GRACE = 1.0
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "upgrade"}
)
_RESOLVED_LIMIT = 1024


@dataclass(frozen=True)
class Denial:
    host: str
    port: int
    reason: str
    at: datetime


class _Idle:
    """Idle time shared by both directions of a connection, so a one-way download is busy."""

    def __init__(self, limit: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._limit = limit
        self._last = self._loop.time()

    def touch(self) -> None:
        self._last = self._loop.time()

    def remaining(self) -> float:
        return self._limit - (self._loop.time() - self._last)


def _parse_head(data: bytes) -> tuple[str, list[tuple[str, str]]] | None:
    if _BAD_HEAD_BYTES.search(data[:-4]):
        return None
    start, *lines = data[:-4].decode("latin-1").split("\r\n")
    headers = []
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.fullmatch(name):
            return None
        headers.append((name, value.strip(" \t")))
    return start, headers


def _strip_hop_by_hop(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    named = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == "connection"
        for token in value.split(",")
    }
    return [(n, v) for n, v in headers if n.lower() not in _HOP_BY_HOP | named]


def _encode_head(start: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [start, *(f"{name}: {value}" for name, value in headers), "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _reply(writer: asyncio.StreamWriter, status: str, *, mark: str | None = None) -> None:
    marked = f"{DENIED_HEADER}: {mark}\r\n" if mark else ""
    head = f"HTTP/1.1 {status}\r\n{marked}Content-Length: 0\r\nConnection: close\r\n\r\n"
    writer.write(head.encode("ascii"))
    await writer.drain()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), _CLOSE_GRACE)
    except (OSError, TimeoutError):
        writer.transport.abort()
    except asyncio.CancelledError:
        writer.transport.abort()
        raise


class EgressGuard:
    """An asyncio HTTP forward proxy on 127.0.0.1 that Chromium and probes must use."""

    def __init__(
        self,
        policy: EgressPolicy,
        *,
        connect_timeout: float = 10.0,
        idle_timeout: float = 60.0,
        max_denials: int = 1000,
    ) -> None:
        self.policy = policy
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.denials: deque[Denial] = deque(maxlen=max_denials)
        self.requests = 0
        self.denied = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[object]] = set()
        self._resolved: OrderedDict[str, str] = OrderedDict()

    def resolved_address(self, host: str) -> str | None:
        """The address the guard last connected to for `host` (evidence for a capture)."""
        return self._resolved.get(host.strip("[]").lower())

    def _remember(self, host: str, ip: IPAddress) -> None:
        key = host.strip("[]").lower()
        self._resolved[key] = str(ip)
        self._resolved.move_to_end(key)
        while len(self._resolved) > _RESOLVED_LIMIT:
            self._resolved.popitem(last=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> EgressGuard:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, limit=_HEAD_LIMIT)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        await asyncio.sleep(0)  # let just-accepted connections register their handlers
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await server.wait_closed()

    @asynccontextmanager
    async def lane(self, screen: RequestFilter | None = None) -> AsyncIterator[Lane]:
        """A listener for one browser context, open while the block runs; without a `screen` it
        filters nothing and only keeps the context's own record of names resolved."""
        lane = Lane(screen)
        server = await asyncio.start_server(
            partial(self._handle, lane=lane), "127.0.0.1", 0, limit=_HEAD_LIMIT
        )
        lane.port = server.sockets[0].getsockname()[1]
        try:
            yield lane
        finally:
            server.close()
            await asyncio.sleep(0)
            for task in list(lane.handlers):
                task.cancel()
            await asyncio.gather(*lane.handlers, return_exceptions=True)
            await server.wait_closed()

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, lane: Lane | None = None
    ) -> None:
        task = asyncio.current_task()
        handlers = [self._handlers] if lane is None else [self._handlers, lane.handlers]
        if task is not None:
            for each in handlers:
                each.add(task)
        try:
            await self._serve(reader, writer, lane)
        except (
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            TimeoutError,
            asyncio.CancelledError,
        ):
            pass  # peers going away and timeouts are ordinary for a proxy
        except Exception:
            log.exception("egress guard connection failed")
        finally:
            await _close(writer)
            if task is not None:
                for each in handlers:
                    each.discard(task)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, lane: Lane | None
    ) -> None:
        try:
            data = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.idle_timeout)
        except asyncio.LimitOverrunError:
            return await _reply(writer, "400 Bad Request")
        head = _parse_head(data)
        request = head[0].split(" ") if head else []
        if head is None or len(request) != 3 or not _TOKEN.fullmatch(request[0]):
            return await _reply(writer, "400 Bad Request")
        method, target, version = request
        if not re.fullmatch(r"HTTP/1\.[01]", version):
            return await _reply(writer, "400 Bad Request")
        if method == "CONNECT":
            return await self._tunnel(reader, writer, target, lane)
        if "://" in target:
            return await self._forward(reader, writer, request, head[1], lane)
        await _reply(writer, "400 Bad Request")

    async def _deny(self, writer: asyncio.StreamWriter, host: str, port: int, reason: str) -> None:
        self.denied += 1
        self.denials.append(Denial(host, port, reason, datetime.now(UTC)))
        log.info("egress denied %s:%d: %s", host, port, reason)
        await _reply(writer, "403 Forbidden", mark="denied")

    async def _dial(
        self, writer: asyncio.StreamWriter, url: str, host: str, port: int, lane: Lane | None
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """Check and connect; on refusal or failure answer the client and return None."""
        self.requests += 1
        reason = self.policy.url_refusal(url)
        if reason is None:
            answers: list[IPAddress] = []
            try:
                async with asyncio.timeout(self.connect_timeout):
                    answers = await self.policy.answers(host, port)
                ip = self.policy.choose(host, answers)
            except EgressDenied as exc:
                reason = exc.detail
            except TimeoutError:
                reason = f"resolving {host!r} timed out"
            if lane is not None and answers:
                lane.resolved(host, answers, None if reason else ip)
        if reason is not None:
            await self._deny(writer, host, port, reason)
            return None
        self._remember(host, ip)
        try:
            async with asyncio.timeout(self.connect_timeout):
                return await asyncio.open_connection(str(ip), port, limit=_HEAD_LIMIT)
        except (OSError, TimeoutError) as exc:
            log.info("egress guard could not connect to %s:%d (%s): %r", host, port, ip, exc)
            await _reply(writer, "502 Bad Gateway")
            return None

    async def _tunnel(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        target: str,
        lane: Lane | None,
    ) -> None:
        match = _AUTHORITY.fullmatch(target)
        port = int(match[3]) if match else 0
        if match is None or not 0 < port < 65536:
            return await _reply(writer, "400 Bad Request")
        host = match[1] or match[2]
        authority = f"[{host}]" if match[1] else host
        if lane is not None:
            shown = (authority if port == 443 else f"{authority}:{port}").lower()
            if lane.refusal(f"https://{shown}/", None) is not None:
                lane.tunnels_blocked.add(shown)
                return await _reply(writer, "403 Forbidden", mark="filtered")
        upstream = await self._dial(writer, f"https://{authority}:{port}/", host, port, lane)
        if upstream is None:
            return
        try:
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            await writer.drain()
            idle = _Idle(self.idle_timeout)
            pumps = [
                asyncio.create_task(self._pump(reader, upstream[1], idle)),
                asyncio.create_task(self._pump(upstream[0], writer, idle)),
            ]
            try:
                await asyncio.gather(*pumps)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            await _close(upstream[1])

    async def _forward(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: list[str],
        headers: list[tuple[str, str]],
        lane: Lane | None,
    ) -> None:
        method, target, version = request
        try:
            parts = urlsplit(target)
            port = parts.port or 80
        except ValueError:
            return await _reply(writer, "400 Bad Request")
        host = parts.hostname or ""
        if parts.scheme != "http" or not host:
            self.requests += 1
            reason = f"only http:// targets can be proxied, not {target.partition(':')[0]!r}"
            return await self._deny(writer, host, port, reason)
        fields = {name.lower(): value for name, value in headers}
        lengths = {v for n, v in headers if n.lower() == "content-length"}
        chunked = "transfer-encoding" in fields
        if (
            len(lengths) > 1
            or (lengths and chunked)
            or (lengths and not re.fullmatch(r"[0-9]+", next(iter(lengths))))
            or (chunked and fields["transfer-encoding"].lower() != "chunked")
        ):
            return await _reply(writer, "400 Bad Request")
        length = int(next(iter(lengths))) if lengths else 0
        if lane is not None and lane.refusal(target.partition("#")[0], headers) is not None:
            # No content: a blocked frame stays blank instead of loading the browser's error
            # page, and an image or a script simply fails to load.
            return await _reply(writer, "204 No Content", mark="filtered")
        upstream = await self._dial(writer, target, host, port, lane)
        if upstream is None:
            return
        up_reader, up_writer = upstream
        try:
            if fields.get("expect", "").lower() == "100-continue" and (length or chunked):
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            authority = parts.netloc.rpartition("@")[2]
            path = target[len(parts.scheme) + 3 + len(parts.netloc) :].partition("#")[0]
            kept = [
                (n, v) for n, v in _strip_hop_by_hop(headers) if n.lower() not in ("host", "expect")
            ]
            start = f"{method} {path if path.startswith('/') else '/' + path} {version}"
            up_writer.write(_encode_head(start, [("Host", authority), *kept]))
            if chunked:
                await self._relay_chunked(reader, up_writer)
            else:
                await self._relay_exact(reader, up_writer, length)
            await self._relay_response(up_reader, writer)
        finally:
            await _close(up_writer)

    async def _relay_exact(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, length: int
    ) -> None:
        while length > 0:
            data = await asyncio.wait_for(src.read(min(_CHUNK, length)), self.idle_timeout)
            if not data:
                raise asyncio.IncompleteReadError(b"", length)
            length -= len(data)
            dst.write(data)
            await dst.drain()

    async def _relay_chunked(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        while True:
            line = await asyncio.wait_for(src.readuntil(b"\r\n"), self.idle_timeout)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise ConnectionError("malformed chunked request body") from None
            dst.write(line)
            if size == 0:
                break
            await self._relay_exact(src, dst, size + 2)
        while line != b"\r\n":  # trailer fields, then the empty line that ends the body
            line = await asyncio.wait_for(src.readuntil(b"\r\n"), self.idle_timeout)
            dst.write(line)
        await dst.drain()

    async def _relay_response(
        self, src: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            try:
                data = await asyncio.wait_for(src.readuntil(b"\r\n\r\n"), self.idle_timeout)
            except (asyncio.LimitOverrunError, asyncio.IncompleteReadError):
                return await _reply(writer, "502 Bad Gateway")
            head = _parse_head(data)
            status = _STATUS_LINE.fullmatch(head[0]) if head else None
            if head is None or status is None:
                return await _reply(writer, "502 Bad Gateway")
            if status[1].startswith("1") and status[1] != "101":
                writer.write(data)  # interim responses pass through; the final one follows
                continue
            # Connection: close keeps the client from reusing this connection for another host.
            writer.write(_encode_head(head[0], _strip_hop_by_hop(head[1])))
            break
        await self._pump(src, writer, _Idle(self.idle_timeout))

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, idle: _Idle
    ) -> None:
        while True:
            try:
                data = await asyncio.wait_for(src.read(_CHUNK), max(idle.remaining(), 0.0))
            except TimeoutError:
                if idle.remaining() <= 0:
                    raise
                continue
            if not data:
                break
            idle.touch()
            dst.write(data)
            await dst.drain()
        if dst.can_write_eof():
            dst.write_eof()
