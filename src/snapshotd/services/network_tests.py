"""Network tests: agent-to-server tests, and the network measurements an http-server round adds.

An agent-to-server test's target is a host and a TCP port, kept in the test's `url` column as
`host:port` (an IPv6 literal in brackets), so the scheduler, the snapshots and the rounds treat it
like any other test. Its literal address is checked against the egress policy when the test is
saved, and a name is resolved through the policy on every round (a denied answer is an error
round). A round's result is the network measurement itself; an http-server round keeps its own
under `network`. Both carry the path under `path` (or why there is none under `path_error`).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from snapshotd.engines import netprobe
from snapshotd.engines.charts import ChartSpec, Series
from snapshotd.engines.egress import EgressPolicy
from snapshotd.errors import BadRequest, EgressDenied, InvalidURL

NETWORK_TYPES = ("agent-to-server",)
# Network rounds only wait on sockets: they are a job kind of their own, which a worker runs on
# loops of their own beside its capture slots (worker/jobs.py).
NETWORK_JOB = "network_probe"
MEASURED_TYPES = ("agent-to-server", "http-server")
DEFAULT_PORT = 80


def split_target(text: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]` or `[v6]:port` into the host and the port it names."""
    value = text.strip()
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise BadRequest(f"{text!r} is not a host or host:port", field="server")
        port_text = rest[1:] if rest else None
    elif value.count(":") > 1:
        host, port_text = value, None  # a bare IPv6 literal
    else:
        host, colon, port_text_raw = value.partition(":")
        port_text = port_text_raw if colon else None
    port = None
    if port_text is not None:
        if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
            raise BadRequest(f"{text!r} has no valid port", field="server")
        port = int(port_text)
    if not host:
        raise BadRequest("names no host", field="server")
    return host, port


def target(server: str, port: int | None) -> str:
    """The stored `host:port` of a test's `server` and `port` (default 80); they must agree."""
    host, named = split_target(server)
    if port is not None and named is not None and port != named:
        raise BadRequest(f"says port {named} but port is {port}", field="port")
    return f"{netprobe.bracketed(host)}:{port or named or DEFAULT_PORT}"


def host_port(stored: str) -> tuple[str, int]:
    host, port = split_target(stored)
    return host, port or DEFAULT_PORT


def check_target(policy: EgressPolicy, stored: str) -> None:
    """A target whose form is wrong, or whose literal address the policy refuses, is a 400 now;
    a name is judged each round, by what it then resolves to."""
    host, port = host_port(stored)
    try:
        policy.check_url(f"http://{netprobe.bracketed(host)}:{port}/")
    except (InvalidURL, EgressDenied) as error:
        raise BadRequest(error.detail, field="server") from None


def url_target(url: str) -> tuple[str, int] | None:
    """The host and port an http-server test's URL connects to."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname, port or (443 if parts.scheme.lower() == "https" else 80)


def network_of(test_type: str, result: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """A round's network measurement, if it has one."""
    if not result:
        return None
    if test_type in NETWORK_TYPES:
        return result
    measured = result.get("network")
    return measured if isinstance(measured, Mapping) else None


def chart(
    title: str,
    start: float,
    end: float,
    rounds: Sequence[tuple[str, int, Mapping[str, Any] | None]],
) -> ChartSpec:
    """Mean latency per agent over a window, with the window's loss in the title."""
    by_agent: dict[str, list[tuple[int, float]]] = {}
    sent = received = 0
    for agent, round_id, measured in rounds:
        if not measured:
            continue
        sent += int(measured.get("sent") or 0)
        received += int(measured.get("received") or 0)
        if measured.get("avg_latency") is not None:
            by_agent.setdefault(agent, []).append((round_id, float(measured["avg_latency"])))
    lines = []
    for agent, points in by_agent.items():
        array = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        lines.append(Series(agent, array[:, 0], array[:, 1]))
    loss = f"{loss_percent(sent, received):.1f}% loss" if sent else "no probes"
    return ChartSpec("line", f"{title} — latency (ms), {loss}", start, end, lines, y_label="ms")


def loss_percent(sent: int, received: int) -> float:
    """The share of probes unanswered, in percent (of at least one sent)."""
    return 100 * (sent - received) / sent


def by_agent(
    rounds: Sequence[tuple[str, str, Mapping[str, Any] | None]],
) -> list[dict[str, Any]]:
    """Per agent, a window's loss, mean latency and jitter, and the last path it traced, from
    its rounds as (agent, when, measurement) in order."""
    agents: dict[str, dict[str, Any]] = {}
    for agent, when, measured in rounds:
        if not measured:
            continue
        entry = agents.setdefault(agent, {"agent": agent, "sent": 0, "got": 0})
        entry["sent"] += measured.get("sent") or 0
        entry["got"] += measured.get("received") or 0
        for key in ("avg_latency", "jitter"):
            if measured.get(key) is not None:
                entry.setdefault(key, []).append(measured[key])
        if measured.get("path"):
            entry["path"], entry["path_time"] = measured["path"], when
    return [
        {
            "agent": entry["agent"],
            "loss": round(loss_percent(entry["sent"], entry["got"]), 1) if entry["sent"] else None,
            "latency": _mean(entry.get("avg_latency")),
            "jitter": _mean(entry.get("jitter")),
            "path": entry.get("path") or [],
            "path_time": entry.get("path_time"),
        }
        for entry in agents.values()
    ]


def _mean(values: list[float] | None) -> float | None:
    return round(statistics.fmean(values), 3) if values else None
