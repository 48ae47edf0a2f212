"""The DNS server probe against a real dnspython server on loopback, over UDP and TCP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from snapshotd.engines.dnsprobe import DnsAnswer, Server, parse_domain, parse_server, query_server
from snapshotd.engines.egress import EgressPolicy
from tests.dns_server import DnsServer

POLICY = EgressPolicy(["127.0.0.1/32"])


@pytest.fixture(scope="module")
def dns_server() -> Iterator[DnsServer]:
    with DnsServer() as server:
        yield server


def ask(server: str, domain: str, rdtype: str, **options: object) -> DnsAnswer:
    options.setdefault("policy", POLICY)
    return asyncio.run(query_server(parse_server(server), domain, rdtype, **options))  # type: ignore[arg-type]


@pytest.mark.parametrize("protocol", ["udp", "tcp"])
def test_a_server_answers_over_each_transport(dns_server: DnsServer, protocol: str) -> None:
    before = dns_server.queries[protocol]
    answer = ask(dns_server.address, "www.acme.test.", "A", protocol=protocol)
    assert answer.error_type is None, answer.error_details
    assert dns_server.queries[protocol] == before + 1
    assert answer.response_code == "NOERROR" and "AA" in answer.flags
    assert sorted(r["data"] for r in answer.answer) == ["192.0.2.10", "192.0.2.11"]
    assert {r["ttl"] for r in answer.answer} == {300}
    assert answer.resolution_time is not None and 0 <= answer.resolution_time < 1000
    assert answer.question == [
        {"name": "www.acme.test.", "type": "A", "class": "IN", "ttl": 0, "data": None}
    ]


def test_a_truncated_udp_answer_is_asked_again_over_tcp(dns_server: DnsServer) -> None:
    before = dict(dns_server.queries)
    answer = ask(dns_server.address, "big.acme.test", "TXT")
    assert answer.error_type is None and answer.retried_over_tcp
    assert len(answer.answer) == 4 and answer.protocol == "udp"
    assert dns_server.queries == {"udp": before["udp"] + 1, "tcp": before["tcp"] + 1}
    small = ask(dns_server.address, "www.acme.test", "A")
    assert not small.retried_over_tcp


def test_a_cname_chain_counts_as_an_answer(dns_server: DnsServer) -> None:
    answer = ask(dns_server.address, "alias.acme.test", "A")
    assert answer.error_type is None
    assert [r["type"] for r in answer.answer] == ["CNAME", "A", "A"]


@pytest.mark.parametrize(
    ("domain", "rdtype", "expected"),
    [
        ("missing.acme.test", "A", "answered NXDOMAIN"),
        ("broken.acme.test", "A", "answered SERVFAIL"),
        ("www.acme.test", "MX", "has no MX record"),
    ],
)
def test_error_answers_say_why(
    dns_server: DnsServer, domain: str, rdtype: str, expected: str
) -> None:
    answer = ask(dns_server.address, domain, rdtype)
    assert answer.error_type == "DNS" and expected in (answer.error_details or "")
    assert answer.resolution_time is not None


def test_a_server_that_never_answers_times_out(dns_server: DnsServer) -> None:
    answer = ask(dns_server.address, "silent.acme.test", "A", timeout_s=0.3)
    assert answer.error_type == "Timeout" and answer.resolution_time is None


def test_a_denied_server_is_never_asked(dns_server: DnsServer) -> None:
    before = dict(dns_server.queries)
    answer = ask(dns_server.address, "www.acme.test", "A", policy=EgressPolicy())
    assert answer.error_type == "Egress" and "loopback" in (answer.error_details or "")
    assert dns_server.queries == before


def test_servers_and_domains_parse() -> None:
    assert parse_server("8.8.8.8") == Server("8.8.8.8", 53)
    assert parse_server("[2001:db8::53]:5353") == Server("2001:db8::53", 5353)
    assert parse_server("2001:db8::53") == Server("2001:db8::53", 53)
    assert str(parse_server("NS1.Example.net:53")) == "ns1.example.net"
    for bad in ("", "a b", "1.2.3.4:0", "1.2.3.4:x", "[::1", "ns1..example"):
        with pytest.raises(ValueError):
            parse_server(bad)
    assert parse_domain("example.com a") == ("example.com.", "A")
    assert parse_domain("example.com") == ("example.com.", "ANY")
    for bad in ("", "example.com A extra", "example.com NOPE"):
        with pytest.raises(ValueError):
            parse_domain(bad)
