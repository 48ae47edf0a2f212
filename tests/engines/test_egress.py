from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Self

import httpx
import pytest

from snapshotd.engines.egress import EgressPolicy
from snapshotd.engines.guard import DENIED_HEADER, EgressGuard
from snapshotd.errors import EgressDenied, InvalidURL

INVALID = [
    "file:///etc/passwd",
    "chrome://settings",
    "javascript:alert(1)",
    "data:text/html,<h1>x</h1>",
    "ftp://example.org/",
    "ws://example.org/",
    "example.org",
    "http://",
    "http://user:pass@/",
    "http://example.org:99999/",
    "http://example.org:0/",
    "http://exa mple.org/",
    "http://1.2.3.4.5/",
    "http://foo.123/",
]

DENIED = [
    "http://127.0.0.1",
    "http://localhost",
    "http://localhost./",
    "http://foo.localhost",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0177.0.0.1/",
    "http://127.1/",
    "http://127.0.0.1./",
    "http://%31%32%37.0.0.1/",
    "http://１２７。０。０。１/",
    "http://127.0.0.1\\@example.org/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[2002:7f00:1::]/",
    "http://169.254.169.254/latest/meta-data",
    "http://10.0.0.1",
    "http://192.168.1.1",
    "http://100.64.0.1",
    "http://[fe80::1]/",
    "http://[fd00:ec2::254]/",
    "http://224.0.0.1",
    "http://0.0.0.0/",
    "https://user:pw@127.0.0.1:8443/",
]

ALLOWED = [
    "https://example.org/",
    "http://93.184.215.14/",
    "HTTP://Example.org:8080/path?q=1#frag",
    "https://user:pw@example.org/",
    "http://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/",
    "http://[64:ff9b::5db8:d70e]/",
    "http://example.org\\@127.0.0.1/",
]


@pytest.mark.parametrize("url", INVALID)
def test_malformed_or_foreign_urls_are_invalid(url: str) -> None:
    policy = EgressPolicy()
    assert policy.url_refusal(url)
    with pytest.raises(InvalidURL):
        policy.check_url(url)


@pytest.mark.parametrize("url", DENIED)
def test_non_global_destinations_are_denied(url: str) -> None:
    policy = EgressPolicy()
    assert policy.url_refusal(url)
    with pytest.raises(EgressDenied):
        policy.check_url(url)


@pytest.mark.parametrize("url", ALLOWED)
def test_global_destinations_pass_the_static_check(url: str) -> None:
    policy = EgressPolicy()
    assert policy.url_refusal(url) is None
    policy.check_url(url)


def test_reasons_name_the_address_and_its_kind() -> None:
    policy = EgressPolicy()
    assert policy.url_refusal("http://127.0.0.1/") == "127.0.0.1 is a loopback address"
    assert "metadata" in (policy.url_refusal("http://169.254.169.254/") or "")
    assert "carrier-grade NAT" in (policy.url_refusal("http://100.64.0.1/") or "")
    assert "embeds 127.0.0.1" in (policy.url_refusal("http://[::ffff:127.0.0.1]/") or "")
    assert "'file'" in (policy.url_refusal("file:///etc/passwd") or "")


@pytest.mark.parametrize(
    "address",
    ["64:ff9b:1:7f00:0:100::", "64:ff9b:1::7f00:1", "2001:0:4136:e378:8000:63bf:80ff:fffe"],
)
def test_transition_forms_are_unwrapped(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert EgressPolicy().address_refusal(address, ip)


def test_cidr_allowlist_opens_only_its_range() -> None:
    policy = EgressPolicy(["127.0.0.0/8", "::1/128"])
    assert policy.url_refusal("http://127.0.0.1:8000/") is None
    assert policy.url_refusal("http://127.1/") is None
    assert policy.url_refusal("http://localhost/") is None
    assert policy.url_refusal("http://[::1]/") is None
    assert policy.url_refusal("http://[::ffff:127.0.0.1]/") is None
    assert policy.url_refusal("http://10.0.0.1/") == "10.0.0.1 is a private address"
    assert policy.url_refusal("http://169.254.169.254/")


def test_single_address_allowlist_entry() -> None:
    policy = EgressPolicy(["10.1.2.3"])
    assert policy.address_refusal("x", ipaddress.ip_address("10.1.2.3")) is None
    assert policy.address_refusal("x", ipaddress.ip_address("10.1.2.4"))


def test_host_name_allowlist() -> None:
    policy = EgressPolicy(["intranet.example", ".corp.example", "dev.localhost"])
    private = ipaddress.ip_address("10.0.0.5")
    assert policy.address_refusal("intranet.example", private) is None
    assert policy.address_refusal("INTRANET.example.", private) is None
    assert policy.address_refusal("wiki.corp.example", private) is None
    assert policy.address_refusal("a.b.corp.example", private) is None
    assert policy.address_refusal("corpx.example", private)
    assert policy.address_refusal("other.example", private)
    assert policy.url_refusal("http://dev.localhost:3000/") is None
    assert policy.url_refusal("http://other.localhost/")


@pytest.mark.parametrize("entry", ["", "10.0.0.0/33", "not a host!", "999.1.1.1", "a..b", "/8"])
def test_invalid_allowlist_entries_raise(entry: str) -> None:
    with pytest.raises(ValueError, match="allowlist"):
        EgressPolicy([entry])


def test_resolve_checks_the_resolved_address() -> None:
    async def scenario() -> None:
        with pytest.raises(EgressDenied, match="loopback"):
            await EgressPolicy().resolve("127.0.0.1", 80)
        with pytest.raises(EgressDenied, match="localhost resolves to"):
            await EgressPolicy().resolve("localhost", 80)
        allowed = await EgressPolicy(["127.0.0.0/8", "::1/128"]).resolve("localhost", 80)
        assert allowed.is_loopback
        assert await EgressPolicy(["::1/128"]).resolve("[::1]", 80) == ipaddress.ip_address("::1")

    asyncio.run(scenario())


class Canary:
    """A tiny HTTP server on loopback that counts the connections it gets."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            request_line, *lines = head.split("\r\n")
            headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines if h)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            method, target, _ = request_line.split(" ")
            text = f"{self.name} {method} {target} {headers.get('connection')} ".encode()
            reply = text + body
            # Claims keep-alive on purpose: the guard must turn that into "close".
            writer.write(
                b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Type: text/plain\r\n"
                + f"Content-Length: {len(reply)}\r\n\r\n".encode()
                + reply
            )
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            await writer.wait_closed()


def run_with(
    allow: list[str], scenario: Callable[[EgressGuard, Canary, Canary], Awaitable[None]]
) -> None:
    async def main() -> None:
        async with (
            EgressGuard(EgressPolicy(allow), connect_timeout=2, idle_timeout=2) as guard,
            Canary("one") as one,
            Canary("two") as two,
        ):
            await scenario(guard, one, two)

    asyncio.run(main())


def proxied_client(guard: EgressGuard) -> httpx.AsyncClient:
    return httpx.AsyncClient(proxy=guard.url, trust_env=False, timeout=3)


async def raw_exchange(guard: EgressGuard, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 3)
    finally:
        writer.close()
        await writer.wait_closed()


def test_plain_http_to_loopback_is_denied_before_connecting() -> None:
    async def scenario(guard: EgressGuard, one: Canary, two: Canary) -> None:
        async with proxied_client(guard) as client:
            response = await client.get(f"{one.url}/secret")
        assert response.status_code == 403
        assert response.headers[DENIED_HEADER] == "denied"
        assert response.headers["connection"] == "close"
        assert response.content == b""
        assert one.connections == 0
        assert guard.denied == 1 and guard.requests == 1
        denial = guard.denials[-1]
        assert (denial.host, denial.port) == ("127.0.0.1", one.port)
        assert "loopback" in denial.reason
        assert denial.at.tzinfo is not None

    run_with([], scenario)


def test_plain_http_is_relayed_when_allowlisted() -> None:
    async def scenario(guard: EgressGuard, one: Canary, two: Canary) -> None:
        async with proxied_client(guard) as client:
            got = await client.get(f"{one.url}/page?q=1")
            posted = await client.post(f"{two.url}/form", content=b"a=1&b=\x00\xff" * 1000)
            again = await client.get(f"{one.url}/again")
        assert got.status_code == 200
        assert got.content == b"one GET /page?q=1 close "
        assert got.headers["connection"] == "close"
        assert DENIED_HEADER not in got.headers
        assert posted.content == b"two POST /form close " + b"a=1&b=\x00\xff" * 1000
        assert again.content == b"one GET /again close "
        assert (one.connections, two.connections) == (2, 1)
        assert guard.denied == 0 and guard.requests == 3

    run_with(["127.0.0.1/32"], scenario)


def test_unreachable_upstream_answers_502_without_marking_a_denial() -> None:
    async def scenario(guard: EgressGuard, one: Canary, two: Canary) -> None:
        closed_port = one.port
        await one.__aexit__()
        async with proxied_client(guard) as client:
            response = await client.get(f"http://127.0.0.1:{closed_port}/")
        assert response.status_code == 502
        assert DENIED_HEADER not in response.headers
        assert response.content == b""
        assert guard.denied == 0

    run_with(["127.0.0.1/32"], scenario)


def test_connect_to_denied_address_gets_403() -> None:
    async def scenario(guard: EgressGuard, one: Canary, two: Canary) -> None:
        for target in (f"127.0.0.1:{one.port}", f"[::1]:{one.port}", f"localhost:{one.port}"):
            answer = await raw_exchange(guard, f"CONNECT {target} HTTP/1.1\r\n\r\n".encode())
            assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n")
            assert b"\r\nX-Egress-Guard: denied\r\n" in answer
            assert answer.endswith(b"Content-Length: 0\r\nConnection: close\r\n\r\n")
        assert one.connections == 0
        assert guard.denied == 3
        assert [d.host for d in guard.denials] == ["127.0.0.1", "::1", "localhost"]

    run_with([], scenario)


def test_connect_tunnel_relays_both_ways() -> None:
    async def scenario(guard: EgressGuard, one: Canary, two: Canary) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
        try:
            writer.write(f"CONNECT 127.0.0.1:{one.port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            established = await reader.readuntil(b"\r\n\r\n")
            assert established == b"HTTP/1.1 200 Connection Established\r\n\r\n"
            writer.write(b"PUT /t HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
            answer = await asyncio.wait_for(reader.read(), 3)
        finally:
            writer.close()
            await writer.wait_closed()
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert answer.endswith(b"one PUT /t None hello")
        assert one.connections == 1

    run_with(["127.0.0.1/32"], scenario)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /origin-form HTTP/1.1\r\nHost: x\r\n\r\n",
        b"garbage\r\n\r\n",
        b"GET http://x/ HTTP/1.1\r\nBad Header\r\n\r\n",
        b"GET http://x/ HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n",
        b"CONNECT nohost HTTP/1.1\r\n\r\n",
    ],
)
def test_other_request_forms_get_400(request_bytes: bytes) -> None:
    async def scenario(guard: EgressGuard, one: Canary, two: Canary) -> None:
        answer = await raw_exchange(guard, request_bytes)
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert guard.denied == 0

    run_with([], scenario)


def test_https_absolute_form_is_denied() -> None:
    async def scenario(guard: EgressGuard, one: Canary, two: Canary) -> None:
        answer = await raw_exchange(guard, b"GET https://example.org/ HTTP/1.1\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n")
        assert guard.denied == 1

    run_with([], scenario)


def test_idle_tunnel_is_closed_after_idle_timeout() -> None:
    async def main() -> None:
        async with (
            EgressGuard(EgressPolicy(["127.0.0.1/32"]), idle_timeout=0.2) as guard,
            Canary("one") as one,
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
            try:
                writer.write(f"CONNECT 127.0.0.1:{one.port} HTTP/1.1\r\n\r\n".encode())
                await reader.readuntil(b"\r\n\r\n")
                assert await asyncio.wait_for(reader.read(), 2) == b""
            finally:
                writer.close()
                await writer.wait_closed()

    asyncio.run(main())


def test_leaving_the_guard_closes_open_tunnels() -> None:
    async def main() -> None:
        async with Canary("one") as one:
            async with EgressGuard(EgressPolicy(["127.0.0.1/32"])) as guard:
                reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
                writer.write(f"CONNECT 127.0.0.1:{one.port} HTTP/1.1\r\n\r\n".encode())
                await reader.readuntil(b"\r\n\r\n")
            try:
                assert await asyncio.wait_for(reader.read(), 2) == b""
            finally:
                writer.close()
                await writer.wait_closed()

    asyncio.run(main())
