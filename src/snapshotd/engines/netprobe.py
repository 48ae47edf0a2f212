"""Network probes: loss, latency and jitter from a train of TCP connects, and the path to a target
from UDP datagrams with rising TTL.

Loss and latency. Each probe of a train opens a TCP connection to the address the egress policy
allowed and times the handshake (SYN out, SYN-ACK back): that is one round trip, and it needs no
privilege. A probe counts as lost when no answer comes within `PROBE_TIMEOUT_S`, which is the
kernel's first SYN retransmission timeout, so an answer to a retransmitted SYN is never timed as
if it were the first packet's; a refused connection (RST) is lost as well, since the service did
not answer. Loss is the lost share in percent; latency is the minimum, mean and maximum of the
answered probes' round trips; jitter is their population standard deviation (what the
ThousandEyes API documents `jitter` as). Asked for ICMP, a train is ICMP echoes instead where
the worker may open an ICMP socket (engines/icmp.py), and TCP handshakes where it may not; the
result names the protocol used.

Path. One UDP socket per TTL from 1 to `MAX_HOPS`, each sending one datagram to the target on a
high port. A router where the TTL runs out answers ICMP time-exceeded, and the target answers
port-unreachable; with `IP_RECVERR` (or `IPV6_RECVERR`) Linux hands those errors to the socket's
error queue, read with `MSG_ERRQUEUE`, which needs no raw socket. Where the platform refuses,
`trace` raises `PathUnavailable` with the reason.

Neither touches a name the policy has not resolved: `measure` resolves through
`EgressPolicy.resolve` and probes exactly that address.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import statistics
import struct
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from snapshotd.engines import icmp
from snapshotd.engines.egress import EgressPolicy, IPAddress
from snapshotd.errors import EgressDenied
from snapshotd.timestamps import iso

__all__ = [
    "MAX_HOPS",
    "PROBES",
    "PROBE_TIMEOUT_S",
    "Hop",
    "NetworkResult",
    "PathUnavailable",
    "measure",
    "trace",
    "train",
]

PROBES = 10
PROBE_TIMEOUT_S = 1.0
PROBE_GAP_S = 0.01
MAX_HOPS = 30
TRACE_TIMEOUT_S = 2.0
RDNS_TIMEOUT_S = 1.0
TRACE_BASE_PORT = 33434

# Linux socket options and error-queue origins; Python's socket module does not name them.
_IP_RECVERR = 11
_IPV6_RECVERR = 25
_ORIGIN_ICMP = 2
_ORIGIN_ICMP6 = 3
_EXTENDED_ERR = struct.Struct("=IBBBBII")


class PathUnavailable(Exception):
    """The platform cannot trace a path from here; the message says why."""


@dataclass
class Train:
    sent: int
    rtts_ms: list[float]
    refused: int

    @property
    def loss(self) -> float:
        return round(100 * (self.sent - len(self.rtts_ms)) / self.sent, 1) if self.sent else 0.0


@dataclass
class Hop:
    hop: int
    ip: str | None = None
    rdns: str | None = None
    response_time: int | None = None


@dataclass
class NetworkResult:
    server: str
    date: datetime
    protocol: str = "tcp"
    server_ip: str | None = None
    source_ip: str | None = None
    sent: int = 0
    received: int = 0
    loss: float | None = None
    min_latency: float | None = None
    avg_latency: float | None = None
    max_latency: float | None = None
    jitter: float | None = None
    path: list[Hop] | None = None
    path_error: str | None = None
    total_time: int | None = None
    error_type: str | None = None
    error_details: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["date"] = iso(self.date)
        return data


async def _connect(ip: IPAddress, port: int) -> tuple[float | None, bool]:
    """One handshake: its round trip in ms (None if lost), and whether it was refused."""
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    loop = asyncio.get_running_loop()
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        began = time.perf_counter()
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                await loop.sock_connect(sock, (str(ip), port))
        except TimeoutError:
            return None, False
        except ConnectionRefusedError:
            return None, True
        except OSError:
            return None, False
        return (time.perf_counter() - began) * 1000, False


async def train(ip: IPAddress, port: int, *, probes: int = PROBES) -> Train:
    """`probes` TCP handshakes with `ip`:`port`, started `PROBE_GAP_S` apart."""
    tasks = []
    for index in range(probes):
        if index:
            await asyncio.sleep(PROBE_GAP_S)
        tasks.append(asyncio.create_task(_connect(ip, port)))
    answers = await asyncio.gather(*tasks)
    rtts = [rtt for rtt, _ in answers if rtt is not None]
    return Train(probes, rtts, sum(refused for _, refused in answers))


def _source_ip(ip: IPAddress) -> str | None:
    """The local address the kernel would send from (a UDP connect sends nothing)."""
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((str(ip), TRACE_BASE_PORT))
            return str(sock.getsockname()[0])
    except OSError:
        return None


def _trace_socket(ip: IPAddress, ttl: int) -> socket.socket:
    v6 = ip.version == 6
    sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if v6:
            sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVERR, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl)
        else:
            sock.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        sock.setblocking(False)
        sock.connect((str(ip), TRACE_BASE_PORT + ttl))
    except OSError:
        sock.close()
        raise
    return sock


def _read_error(sock: socket.socket) -> tuple[str | None, bool] | None:
    """The ICMP error queued on `sock`: who sent it, and whether it came from the target
    (port unreachable) rather than a router on the way (time exceeded). None if not ICMP."""
    try:
        _, ancillary, _, _ = sock.recvmsg(512, 512, socket.MSG_ERRQUEUE)
    except OSError:
        return None
    for _level, _kind, data in ancillary:
        if len(data) < _EXTENDED_ERR.size + 8:
            continue
        _errno, origin, kind, code, _pad, _info, _data = _EXTENDED_ERR.unpack_from(data)
        if origin not in (_ORIGIN_ICMP, _ORIGIN_ICMP6):
            continue
        offender = data[_EXTENDED_ERR.size :]
        family = struct.unpack_from("=H", offender)[0]
        if family == socket.AF_INET:
            sender: str | None = socket.inet_ntop(socket.AF_INET, offender[4:8])
        elif family == socket.AF_INET6 and len(offender) >= 24:
            sender = socket.inet_ntop(socket.AF_INET6, offender[8:24])
        else:
            sender = None
        reached = (origin == _ORIGIN_ICMP and kind == 3 and code == 3) or (
            origin == _ORIGIN_ICMP6 and kind == 1 and code == 4
        )
        return sender, reached
    return None


def _answer(sock: socket.socket, target: str) -> tuple[str | None, bool] | None:
    """What woke a trace socket: a queued ICMP error, or a datagram from the target itself
    (something listens on that port: the target answered all the same)."""
    got = _read_error(sock)
    if got is not None:
        return got
    try:
        sock.recv(512)
    except OSError:
        return None
    return target, True


async def trace(
    ip: IPAddress, *, max_hops: int = MAX_HOPS, timeout_s: float = TRACE_TIMEOUT_S
) -> list[Hop]:
    """The hops from here to `ip`, the target last, within `timeout_s`. A hop that did not
    answer has no address. PathUnavailable where the platform cannot do this.

    The sockets wait in the event loop, not in a thread: an ICMP error queued on a socket makes
    epoll report it (EPOLLERR), which asyncio hands to the socket's reader."""
    if not sys.platform.startswith("linux") or not hasattr(socket, "MSG_ERRQUEUE"):
        raise PathUnavailable(f"{sys.platform} does not queue ICMP errors for UDP sockets")
    loop = asyncio.get_running_loop()
    sockets: dict[int, socket.socket] = {}
    answers: dict[int, tuple[str | None, bool, float]] = {}
    sent: dict[int, float] = {}
    complete = asyncio.Event()

    def finished() -> bool:
        reached = [ttl for ttl, (_, done, _) in answers.items() if done]
        return bool(reached) and all(t in answers for t in range(1, min(reached) + 1))

    def on_ready(ttl: int) -> None:
        got = _answer(sockets[ttl], str(ip))
        if got is None:
            return
        loop.remove_reader(sockets[ttl].fileno())
        answers[ttl] = (got[0], got[1], time.perf_counter())
        if finished():
            complete.set()

    try:
        for ttl in range(1, max_hops + 1):
            try:
                sockets[ttl] = _trace_socket(ip, ttl)
            except OSError as error:
                raise PathUnavailable(f"a UDP socket with a TTL was refused: {error}") from None
        for ttl, sock in sockets.items():
            loop.add_reader(sock.fileno(), on_ready, ttl)
            sent[ttl] = time.perf_counter()
            try:
                sock.send(b"snapshotd path trace")
            except OSError as error:
                raise PathUnavailable(f"sending the trace was refused: {error}") from None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(complete.wait(), timeout_s)
    finally:
        for sock in sockets.values():
            loop.remove_reader(sock.fileno())
            sock.close()
    reached = [ttl for ttl, (_, done, _) in answers.items() if done]
    last = min(reached) if reached else max(answers, default=0)
    hops = []
    for ttl in range(1, last + 1):
        if ttl in answers:
            sender, _, when = answers[ttl]
            hops.append(Hop(ttl, sender, response_time=round((when - sent[ttl]) * 1000)))
        else:
            hops.append(Hop(ttl))
    return hops


async def _names(addresses: set[str]) -> dict[str, str]:
    """Reverse DNS for each address, all within `RDNS_TIMEOUT_S`; unanswered ones are left out."""
    loop = asyncio.get_running_loop()

    async def name(address: str) -> tuple[str, str | None]:
        try:
            host, _ = await loop.getnameinfo((address, 0), socket.NI_NAMEREQD)
        except (OSError, UnicodeError):
            return address, None
        return address, host

    tasks = [asyncio.create_task(name(a)) for a in sorted(addresses)]
    if not tasks:
        return {}
    done, pending = await asyncio.wait(tasks, timeout=RDNS_TIMEOUT_S)
    for task in pending:
        task.cancel()
    return {a: n for a, n in (t.result() for t in done) if n is not None}


async def _path(ip: IPAddress) -> list[Hop]:
    hops = await trace(ip)
    names = await _names({hop.ip for hop in hops if hop.ip is not None})
    for hop in hops:
        if hop.ip is not None:
            hop.rdns = names.get(hop.ip)
    return hops


async def _train(ip: IPAddress, port: int, probes: int, protocol: str) -> tuple[Train, str]:
    """A train in `protocol`, and the protocol it really used: ICMP echo where the worker may
    send it (engines/icmp.py), TCP handshakes otherwise."""
    opened = icmp.open_socket(ip) if protocol == "icmp" else None
    if opened is None:
        return await train(ip, port, probes=probes), "tcp"
    sock, raw = opened
    rtts = await icmp.train(
        sock, raw, ip, probes=probes, gap_s=PROBE_GAP_S, timeout_s=PROBE_TIMEOUT_S
    )
    return Train(probes, rtts, 0), "icmp"


async def measure(
    host: str,
    port: int,
    *,
    policy: EgressPolicy,
    probes: int = PROBES,
    path: bool = True,
    protocol: str = "tcp",
) -> NetworkResult:
    """Resolve `host` through the egress policy, then a train of `probes` probes (TCP
    handshakes to `port`, or ICMP echo where asked for and allowed) and, with `path`, a path
    trace, side by side. Never raises for the target's faults."""
    result = NetworkResult(server=f"{bracketed(host)}:{port}", date=datetime.now(UTC))
    began = time.perf_counter()
    try:
        ip = await policy.resolve(host, port)
    except EgressDenied as error:
        result.error_type = "DNS" if error.unresolved else "Egress"
        result.error_details = error.detail
        result.total_time = round((time.perf_counter() - began) * 1000)
        return result
    result.server_ip, result.source_ip = str(ip), _source_ip(ip)
    tracing = asyncio.create_task(_path(ip)) if path else None
    try:
        measured, result.protocol = await _train(ip, port, probes, protocol)
    except BaseException:
        if tracing is not None:
            tracing.cancel()
        raise
    result.sent, result.received, result.loss = measured.sent, len(measured.rtts_ms), measured.loss
    if measured.rtts_ms:
        rtts = measured.rtts_ms
        result.min_latency = round(min(rtts), 3)
        result.avg_latency = round(statistics.fmean(rtts), 3)
        result.max_latency = round(max(rtts), 3)
        result.jitter = round(statistics.pstdev(rtts), 3)
    elif measured.refused == measured.sent and measured.sent:
        result.error_type = "Connect"
        result.error_details = f"every connection to {result.server} was refused"
    else:
        result.error_type = "Timeout"
        result.error_details = f"no probe was answered within {PROBE_TIMEOUT_S:g} s"
    if tracing is not None:
        try:
            result.path = await tracing
        except PathUnavailable as error:
            result.path_error = str(error)
    result.total_time = round((time.perf_counter() - began) * 1000)
    return result


def bracketed(host: str) -> str:
    """A host as a URL or `host:port` writes it: an IPv6 address in brackets."""
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host
