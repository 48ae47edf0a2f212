"""The capture stack that the worker and `snapshotd capture` share: the browser and the HTTP client
both reach the network only through its one egress guard."""

from __future__ import annotations

import asyncio

from snapshotd.config import Settings
from snapshotd.engines.capture import CaptureOptions
from snapshotd.engines.guard import DENIED_HEADER
from snapshotd.engines.stack import capture_stack
from tests.pages import PageServer


def test_the_browser_and_the_http_client_go_through_one_guard(
    settings: Settings, pages: PageServer, canary: PageServer
) -> None:
    async def scenario() -> None:
        async with capture_stack(settings, slots=1) as stack:
            assert stack.pool.proxy_url == stack.guard.url and stack.pool.stats.slots == 1
            result = await stack.engine.capture(CaptureOptions(url=pages.url + "/"))
            assert result.metadata["resolved_ip"] == "127.0.0.1"
            assert (await stack.http.get(pages.url + "/")).status_code == 200
            refused = await stack.http.get(canary.url + "/secret")
            assert refused.status_code == 403 and refused.headers[DENIED_HEADER] == "denied"
            assert stack.guard.denied == 1

    asyncio.run(scenario())
    assert not canary.hits
