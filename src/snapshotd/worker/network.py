"""The network part of a round: an agent-to-server test's whole result, or the measurements an
http-server round adds beside its HTTP request (while `networkMeasurements` is on). Every probe
resolves and connects through the egress policy (engines/netprobe.py)."""

from __future__ import annotations

from typing import Any

from snapshotd.engines import netprobe
from snapshotd.engines.egress import EgressPolicy
from snapshotd.services import network_tests
from snapshotd.services.records import SyntheticTest
from snapshotd.services.synthetic import ProbeSettings


async def agent_to_server(
    test: SyntheticTest, settings: ProbeSettings, policy: EgressPolicy
) -> dict[str, Any]:
    host, port = network_tests.host_port(test.url)
    measured = await netprobe.measure(host, port, policy=policy, protocol=settings.protocol)
    return measured.to_dict()


async def beside_http(url: str, policy: EgressPolicy) -> dict[str, Any] | None:
    """The URL's host and port measured like an agent-to-server target; None for a URL
    without a host (its HTTP result already says why)."""
    target = network_tests.url_target(url)
    if target is None:
        return None
    return (await netprobe.measure(*target, policy=policy)).to_dict()
