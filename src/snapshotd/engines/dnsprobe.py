"""DNS server probe: one query for a name and record type, sent straight to one DNS server over UDP
or TCP with dnspython, timed from the query leaving to the answer parsed.

The server's address is checked against the egress policy before anything is sent (a name is
resolved through the policy first), so a probe never reaches an address the policy refuses. Like
the HTTP probes, `query_server` never raises for a problem with the target: the answer carries
`error_type` and `error_details`.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from snapshotd.engines.egress import EgressPolicy, IPAddress
from snapshotd.errors import EgressDenied

__all__ = ["DnsAnswer", "Server", "parse_domain", "parse_server", "query_server", "record_type"]

DNS_PORT = 53


@dataclass(frozen=True)
class Server:
    """A DNS server as a test names it: a host (name or address) and a port."""

    host: str
    port: int = DNS_PORT

    def __str__(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return shown if self.port == DNS_PORT else f"{shown}:{self.port}"


def parse_server(text: str) -> Server:
    """`8.8.8.8`, `ns1.example.net`, `[2001:db8::53]`, or any of them with `:port`; ValueError for
    anything else."""
    text = text.strip()
    host, port = text, DNS_PORT
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r} is not a server address")
        port_text = rest[1:] if rest else str(DNS_PORT)
        ipaddress.IPv6Address(host)
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    elif ":" in text:
        ipaddress.IPv6Address(text)
        port_text = str(DNS_PORT)
    else:
        port_text = str(DNS_PORT)
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise ValueError(f"{text!r} has no valid port")
    port = int(port_text)
    if not host or not _is_address(host):
        try:
            dns.name.from_text(host)
        except dns.exception.DNSException as error:
            raise ValueError(f"{host!r} is not a host name: {error}") from None
        if not all(part.isascii() for part in host) or " " in host or not host.strip("."):
            raise ValueError(f"{host!r} is not a host name")
    return Server(host.lower(), port)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def record_type(text: str) -> str:
    """A record type's canonical mnemonic (`a` → `A`); ValueError for an unknown one."""
    try:
        return dns.rdatatype.to_text(dns.rdatatype.from_text(text.strip().upper()))
    except dns.exception.DNSException:
        raise ValueError(f"{text!r} is not a DNS record type") from None


@dataclass
class DnsAnswer:
    server: str
    protocol: Literal["udp", "tcp"]
    server_ip: str | None = None
    resolution_time: int | None = None
    response_code: str | None = None
    flags: list[str] = field(default_factory=list)
    query_id: int | None = None
    retried_over_tcp: bool = False
    question: list[dict[str, Any]] = field(default_factory=list)
    answer: list[dict[str, Any]] = field(default_factory=list)
    error_type: str | None = None
    error_details: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def _address(server: Server, policy: EgressPolicy) -> IPAddress:
    if _is_address(server.host):
        ip = ipaddress.ip_address(server.host)
        reason = policy.address_refusal(server.host, ip)
        if reason is not None:
            raise EgressDenied(reason)
        return ip
    return await policy.resolve(server.host, server.port)


def _records(section: list[Any]) -> list[dict[str, Any]]:
    records = []
    for rrset in section:
        for rdata in rrset or [None]:
            records.append(
                {
                    "name": rrset.name.to_text(),
                    "type": dns.rdatatype.to_text(rrset.rdtype),
                    "class": dns.rdataclass.to_text(rrset.rdclass),
                    "ttl": rrset.ttl,
                    "data": None if rdata is None else rdata.to_text(),
                }
            )
    return records


async def query_server(
    server: Server,
    domain: str,
    rdtype: str,
    *,
    policy: EgressPolicy,
    protocol: Literal["udp", "tcp"] = "udp",
    timeout_s: float = 5.0,
    recursion: bool = True,
) -> DnsAnswer:
    """Ask `server` for `domain`'s `rdtype` records once. An answer with a response code other
    than NOERROR, or with no record of the type asked for, is an error of type `DNS`."""
    answer = DnsAnswer(server=str(server), protocol=protocol)
    try:
        ip = await _address(server, policy)
    except EgressDenied as error:
        answer.error_type = "DNS" if error.unresolved else "Egress"
        answer.error_details = error.detail
        return answer
    answer.server_ip = str(ip)
    query = dns.message.make_query(domain, rdtype)
    if not recursion:
        query.flags &= ~dns.flags.RD
    answer.query_id = query.id
    answer.question = _records(query.question)
    started = time.perf_counter()
    try:
        if protocol == "tcp":
            reply = await dns.asyncquery.tcp(query, str(ip), timeout=timeout_s, port=server.port)
        else:
            # A truncated UDP answer is asked again over TCP, as a resolver would.
            reply, answer.retried_over_tcp = await dns.asyncquery.udp_with_fallback(
                query, str(ip), timeout=timeout_s, port=server.port
            )
    except dns.exception.Timeout:
        answer.error_type = "Timeout"
        answer.error_details = f"no answer from {server} within {timeout_s:g} s"
        return answer
    except (OSError, EOFError, dns.exception.DNSException) as error:
        answer.error_type = "Connect" if isinstance(error, OSError) else "DNS"
        answer.error_details = f"{server}: {error or type(error).__name__}"
        return answer
    answer.resolution_time = int((time.perf_counter() - started) * 1000)
    answer.response_code = dns.rcode.to_text(reply.rcode())
    answer.flags = dns.flags.to_text(reply.flags).split()
    answer.answer = _records(reply.answer)
    if reply.rcode() != dns.rcode.NOERROR:
        answer.error_type = "DNS"
        answer.error_details = f"{server} answered {answer.response_code} for {domain} {rdtype}"
    elif rdtype != "ANY" and not any(r["type"] == rdtype for r in answer.answer):
        answer.error_type = "DNS"
        answer.error_details = f"{server} has no {rdtype} record for {domain}"
    return answer


def parse_domain(text: str) -> tuple[str, str]:
    """A test's target, `example.com A`, as (name, record type); a name alone asks for ANY, as
    ThousandEyes does. ValueError for anything else."""
    parts = text.split()
    if not parts or len(parts) > 2:
        raise ValueError("must be a domain name, then optionally a record type: example.com A")
    try:
        name = dns.name.from_text(parts[0]).to_text()
    except dns.exception.DNSException as error:
        raise ValueError(f"{parts[0]!r} is not a domain name: {error}") from None
    if not parts[0].isascii() or parts[0].strip(".") == "":
        raise ValueError(f"{parts[0]!r} is not a domain name")
    return name, record_type(parts[1]) if len(parts) == 2 else "ANY"
