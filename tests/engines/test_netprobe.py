"""Network probes against real listeners on loopback: TCP handshake trains, the egress policy's
say over which address is probed, and path tracing through the kernel's ICMP error queue."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
from collections.abc import Iterator

import pytest

from snapshotd.engines import icmp, netprobe
from snapshotd.engines.egress import EgressPolicy
from snapshotd.errors import BadRequest
from snapshotd.services import network_tests

LOOPBACK = ipaddress.ip_address("127.0.0.1")
ALLOW = EgressPolicy(["127.0.0.1/32"])


@pytest.fixture
def accepting() -> Iterator[int]:
    """A listener that accepts and closes every connection."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    listener.close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_train_that_is_all_answered_has_no_loss(accepting: int) -> None:
    result = asyncio.run(netprobe.measure("127.0.0.1", accepting, policy=ALLOW, path=False))
    assert (result.sent, result.received, result.loss) == (10, 10, 0.0)
    assert result.error_type is None and result.server == f"127.0.0.1:{accepting}"
    assert result.min_latency is not None and result.max_latency is not None
    assert 0 < result.min_latency <= (result.avg_latency or 0) <= result.max_latency
    assert result.jitter is not None and result.jitter <= result.max_latency - result.min_latency


def test_a_full_queue_drops_syns_and_the_train_counts_them() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        measured = asyncio.run(netprobe.train(LOOPBACK, listener.getsockname()[1], probes=4))
        listener.setblocking(False)
        completed = 0
        while True:
            try:
                listener.accept()[0].close()
            except BlockingIOError:
                break
            completed += 1
    assert 0 < len(measured.rtts_ms) == completed < 4 and measured.refused == 0
    assert measured.loss == 100 * (4 - completed) / 4


def test_a_refused_port_loses_every_probe() -> None:
    port = _closed_port()
    result = asyncio.run(netprobe.measure("127.0.0.1", port, policy=ALLOW, path=False))
    assert (result.loss, result.received, result.error_type) == (100.0, 0, "Connect")
    assert result.avg_latency is None and "refused" in (result.error_details or "")


def test_a_name_that_resolves_to_a_refused_address_is_never_probed() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        pinned = EgressPolicy(["127.0.0.2/32"], hosts={"inside.test": "127.0.0.1"})
        result = asyncio.run(netprobe.measure("inside.test", port, policy=pinned))
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert result.error_type == "Egress" and result.sent == 0 and result.path is None
    assert "inside.test resolves to 127.0.0.1" in (result.error_details or "")


def test_the_path_to_a_loopback_address_is_one_hop() -> None:
    hops = asyncio.run(netprobe.trace(LOOPBACK, max_hops=4, timeout_s=2))
    assert [(hop.hop, hop.ip) for hop in hops] == [(1, "127.0.0.1")]
    assert hops[0].response_time is not None and hops[0].response_time < 1000


def test_each_trace_socket_carries_its_own_ttl() -> None:
    for ttl in (1, 7, 30):
        sock = netprobe._trace_socket(LOOPBACK, ttl)
        try:
            assert sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL) == ttl
            assert sock.getpeername() == ("127.0.0.1", netprobe.TRACE_BASE_PORT + ttl)
        finally:
            sock.close()


def test_a_measured_round_carries_its_path_with_names(accepting: int) -> None:
    result = asyncio.run(netprobe.measure("127.0.0.1", accepting, policy=ALLOW))
    assert result.path is not None and result.path_error is None
    assert [(h.hop, h.ip, h.rdns) for h in result.path] == [(1, "127.0.0.1", "localhost")]


def test_a_platform_without_an_error_queue_refuses_to_trace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(netprobe.sys, "platform", "darwin")
    with pytest.raises(netprobe.PathUnavailable, match="darwin"):
        asyncio.run(netprobe.trace(LOOPBACK))


@pytest.mark.parametrize(
    ("server", "port", "stored"),
    [
        ("example.org", None, "example.org:80"),
        ("example.org:8443", None, "example.org:8443"),
        ("example.org", 22, "example.org:22"),
        ("example.org:22", 22, "example.org:22"),
        ("[2001:db8::1]:53", None, "[2001:db8::1]:53"),
        ("2001:db8::1", 53, "[2001:db8::1]:53"),
    ],
)
def test_a_target_is_stored_as_host_and_port(server: str, port: int | None, stored: str) -> None:
    assert network_tests.target(server, port) == stored


@pytest.mark.parametrize(
    ("server", "port"), [("example.org:81", 82), ("example.org:0", None), (":80", None)]
)
def test_a_bad_target_is_refused(server: str, port: int | None) -> None:
    with pytest.raises(BadRequest):
        network_tests.target(server, port)


def test_a_literal_refused_address_is_refused_when_saved() -> None:
    with pytest.raises(BadRequest, match="private"):
        network_tests.check_target(EgressPolicy(), "10.0.0.1:80")
    network_tests.check_target(EgressPolicy(), "example.org:80")


def test_icmp_echo_is_used_where_the_worker_may_send_it() -> None:
    opened = icmp.open_socket(LOOPBACK)
    if opened is None:
        pytest.skip("this machine allows neither a ping socket nor a raw socket")
    opened[0].close()

    async def five() -> list[netprobe.NetworkResult]:
        return list(
            await asyncio.gather(
                *(
                    netprobe.measure("127.0.0.1", 9, policy=ALLOW, protocol="icmp", path=False)
                    for _ in range(5)
                )
            )
        )

    # Trains side by side each count only their own replies, though a raw socket sees them all.
    for result in asyncio.run(five()):
        assert (result.protocol, result.sent, result.received, result.loss) == ("icmp", 10, 10, 0)
        assert result.min_latency is not None and result.error_type is None


def test_without_an_icmp_socket_the_train_is_tcp(
    accepting: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(icmp, "open_socket", lambda ip: None)
    result = asyncio.run(
        netprobe.measure("127.0.0.1", accepting, policy=ALLOW, protocol="icmp", path=False)
    )
    assert (result.protocol, result.received, result.loss) == ("tcp", 10, 0.0)
