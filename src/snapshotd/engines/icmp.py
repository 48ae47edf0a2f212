"""ICMP echo trains, where the worker may send ICMP at all.

Two kinds of socket can: Linux's unprivileged ping socket (`SOCK_DGRAM` + `IPPROTO_ICMP`, open
to the groups in `net.ipv4.ping_group_range`), and a raw socket (`CAP_NET_RAW`). `open_socket`
tries them in that order; None means neither is allowed here, and the caller measures with TCP.
A ping socket only ever receives its own replies; a raw socket receives every ICMP packet of the
host, so replies are matched by identifier, sequence number and sender.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import struct
import time

from snapshotd.engines.egress import IPAddress

__all__ = ["open_socket", "train"]

_HEADER = struct.Struct("!BBHHH")  # type, code, checksum, identifier, sequence
_ECHO = {4: (8, 0), 6: (128, 129)}  # family version: (request type, reply type)
_PAYLOAD = b"snapshotd network probe."


def open_socket(ip: IPAddress) -> tuple[socket.socket, bool] | None:
    """An ICMP socket for `ip`'s family and whether it is raw; None if both kinds are refused."""
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    protocol = socket.IPPROTO_ICMPV6 if ip.version == 6 else socket.IPPROTO_ICMP
    for kind in (socket.SOCK_DGRAM, socket.SOCK_RAW):
        try:
            sock = socket.socket(family, kind, protocol)
        except OSError:
            continue
        sock.setblocking(False)
        return sock, kind == socket.SOCK_RAW
    return None


def _checksum(data: bytes) -> int:
    padded = data + b"\0" * (len(data) % 2)
    total = sum(struct.unpack(f"!{len(padded) // 2}H", padded))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _request(version: int, ident: int, sequence: int) -> bytes:
    kind = _ECHO[version][0]
    bare = _HEADER.pack(kind, 0, 0, ident, sequence) + _PAYLOAD
    # The kernel fills in ICMPv6 checksums; IPv4 ones are the sender's to compute.
    checksum = 0 if version == 6 else _checksum(bare)
    return _HEADER.pack(kind, 0, checksum, ident, sequence) + _PAYLOAD


async def train(
    sock: socket.socket, raw: bool, ip: IPAddress, *, probes: int, gap_s: float, timeout_s: float
) -> list[float]:
    """Sends `probes` echo requests `gap_s` apart on `sock` (closed afterwards); the round trips
    in ms of those answered within `timeout_s` of being sent."""
    loop = asyncio.get_running_loop()
    ident = secrets.randbits(16)
    reply_type = _ECHO[ip.version][1]
    sent: dict[int, float] = {}
    rtts: dict[int, float] = {}
    complete = asyncio.Event()

    def on_ready() -> None:
        while True:
            try:
                data, sender = sock.recvfrom(2048)
            except OSError:  # nothing more to read (BlockingIOError), or the socket failed
                return
            arrived = time.perf_counter()
            if raw and ip.version == 4:
                data = data[(data[0] & 0x0F) * 4 :]  # a raw IPv4 socket reads the IP header too
            if len(data) < _HEADER.size:
                continue
            kind, _code, _sum, got_ident, sequence = _HEADER.unpack_from(data)
            if kind != reply_type or sequence not in sent or sequence in rtts:
                continue
            if raw and (got_ident != ident or sender[0] != str(ip)):
                continue  # another train's reply, or another host's
            if arrived - sent[sequence] <= timeout_s:
                rtts[sequence] = (arrived - sent[sequence]) * 1000
            if len(rtts) == probes:
                complete.set()

    loop.add_reader(sock.fileno(), on_ready)
    try:
        for sequence in range(probes):
            if sequence:
                await asyncio.sleep(gap_s)
            sent[sequence] = time.perf_counter()
            with contextlib.suppress(OSError):  # a refused send is a lost probe
                sock.sendto(_request(ip.version, ident, sequence), (str(ip), 0))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(complete.wait(), timeout_s)
    finally:
        loop.remove_reader(sock.fileno())
        sock.close()
    return [rtts[sequence] for sequence in sorted(rtts)]
