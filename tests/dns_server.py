"""A small authoritative DNS server for tests, built on dnspython: UDP and TCP on one loopback
port, answering a fixed zone. `missing.acme.test` is NXDOMAIN, `broken.acme.test` SERVFAIL, and
`silent.acme.test` is never answered (a timeout); `big.acme.test TXT` is too big for UDP."""

from __future__ import annotations

import socket
import struct
import threading
from types import TracebackType

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

ZONE = {
    ("www.acme.test.", "A"): ["192.0.2.10", "192.0.2.11"],
    ("www.acme.test.", "AAAA"): ["2001:db8::10"],
    ("alias.acme.test.", "CNAME"): ["www.acme.test."],
    ("mail.acme.test.", "MX"): ["10 mx.acme.test."],
    # Past the 512 bytes of a plain UDP answer: sent truncated over UDP, whole over TCP.
    ("big.acme.test.", "TXT"): [f'"{n}{"x" * 200}"' for n in range(4)],
}
UDP_LIMIT = 512
RCODES = {"missing.acme.test.": dns.rcode.NXDOMAIN, "broken.acme.test.": dns.rcode.SERVFAIL}
SILENT = "silent.acme.test."


def _answer(wire: bytes, limit: int | None = None) -> bytes | None:
    query = dns.message.from_wire(wire)
    reply = dns.message.make_response(query)
    question = query.question[0]
    name, kind = question.name.to_text().lower(), dns.rdatatype.to_text(question.rdtype)
    if name == SILENT:
        return None
    if name in RCODES:
        reply.set_rcode(RCODES[name])
        return reply.to_wire()
    if (name, "CNAME") in ZONE and kind != "CNAME":
        target = ZONE[(name, "CNAME")][0]
        reply.answer.append(dns.rrset.from_text(name, 300, "IN", "CNAME", target))
        name = target
    records = ZONE.get((name, kind))
    if records:
        reply.answer.append(dns.rrset.from_text(name, 300, "IN", kind, *records))
    elif not any(n == name for n, _ in ZONE):
        reply.set_rcode(dns.rcode.NXDOMAIN)
    reply.flags |= dns.flags.AA
    whole = reply.to_wire()
    if limit is not None and len(whole) > limit:
        reply.answer.clear()
        reply.flags |= dns.flags.TC
        return reply.to_wire()
    return whole


class DnsServer:
    """`with DnsServer() as server:` serves on `server.address` (`127.0.0.1:<port>`) and counts
    the queries it got by transport in `server.queries`."""

    def __init__(self) -> None:
        self.queries = {"udp": 0, "tcp": 0}
        self._stop = threading.Event()
        for _ in range(20):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", 0))
            self.port = udp.getsockname()[1]
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind(("127.0.0.1", self.port))
            except OSError:
                udp.close()
                tcp.close()
                continue
            break
        tcp.listen(16)
        udp.settimeout(0.1)
        tcp.settimeout(0.1)
        self._udp, self._tcp = udp, tcp
        self._threads = [
            threading.Thread(target=self._serve_udp, daemon=True),
            threading.Thread(target=self._serve_tcp, daemon=True),
        ]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> DnsServer:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._udp.close()
        self._tcp.close()

    def _serve_udp(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self._udp.recvfrom(65535)
            except TimeoutError:
                continue
            self.queries["udp"] += 1
            reply = _answer(wire, UDP_LIMIT)
            if reply is not None:
                self._udp.sendto(reply, peer)

    def _serve_tcp(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._tcp.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    (length,) = struct.unpack("!H", _read(conn, 2))
                    wire = _read(conn, length)
                except (OSError, struct.error):
                    continue
                self.queries["tcp"] += 1
                reply = _answer(wire)
                if reply is not None:
                    conn.sendall(struct.pack("!H", len(reply)) + reply)


def _read(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise OSError("connection closed")
        data += chunk
    return data
