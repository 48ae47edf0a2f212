"""A round of a DNS server or API test: the probes of engines/dnsprobe.py and engines/apiprobe.py
run with a test's settings, their outcome turned into the round's stored result.

A DNS round asks every server of the test at once, so the round takes as long as the slowest
server; it is available when every server answered with the record asked for. An API round runs
its steps through the capture stack's guarded HTTP client.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from snapshotd.engines import apiprobe, dnsprobe
from snapshotd.engines.egress import EgressPolicy
from snapshotd.engines.stack import CaptureStack
from snapshotd.services.dns_api_tests import api_settings, dns_settings
from snapshotd.services.records import SyntheticTest
from snapshotd.timestamps import iso


async def run_round(
    test: SyntheticTest, policy: EgressPolicy, stack: CaptureStack
) -> dict[str, Any]:
    """The stored result of one round; ValidationError if the test's stored settings are not
    valid any more."""
    if test.type == "dns-server":
        return await _dns_round(test, policy)
    return await _api_round(test, policy, stack)


async def _dns_round(test: SyntheticTest, policy: EgressPolicy) -> dict[str, Any]:
    settings = dns_settings(test)
    date = datetime.now(UTC)
    answers = await asyncio.gather(
        *(
            dnsprobe.query_server(
                dnsprobe.parse_server(server),
                settings.domain,
                settings.record_type,
                policy=policy,
                protocol=settings.protocol,
                timeout_s=settings.time_limit,
                recursion=settings.recursion,
            )
            for server in settings.servers
        )
    )
    failed = [answer for answer in answers if answer.error_type is not None]
    times = [a.resolution_time for a in answers if a.resolution_time is not None]
    return {
        "date": iso(date),
        "domain": settings.domain,
        "record_type": settings.record_type,
        "servers": [answer.to_dict() for answer in answers],
        "total_time": max(times) if times else None,
        "error_type": failed[0].error_type if failed else None,
        "error_details": "; ".join(a.error_details or "" for a in failed) or None,
    }


async def _api_round(
    test: SyntheticTest, policy: EgressPolicy, stack: CaptureStack
) -> dict[str, Any]:
    settings = api_settings(test)
    result = await apiprobe.run_api(
        settings.steps,
        http=stack.http,
        guard=stack.guard,
        policy=policy,
        variables=dict(settings.variables),
        time_limit_s=settings.time_limit,
        follow_redirects=settings.follow_redirects,
    )
    return {**result.to_dict(), "total_time": result.api_transaction_time}
