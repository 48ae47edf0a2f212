"""block_ads and block_trackers: the installed EasyList and EasyPrivacy, applied by a lane of the
egress guard, in real Chromium, against a loopback server that answers under listed host names."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from snapshotd.config import Settings
from snapshotd.engines.capture import CaptureOptions, CaptureResult
from snapshotd.engines.egress import EgressPolicy
from snapshotd.engines.filterlists import FilterLists, PageRules
from snapshotd.engines.guard import DENIED_HEADER, EgressGuard
from snapshotd.engines.stack import capture_stack
from snapshotd.errors import CaptureFailed
from tests.adpages import (
    AD_HOST,
    AD_SLOT,
    BACKGROUND,
    HOSTS,
    SCRIPT_ONLY_HOST,
    TRACKER_HOST,
    TRACKER_SITE,
    AdServer,
)
from tests.pages import PageServer

EGRESS_REFUSED = "egress guard refused"


@pytest.fixture(scope="module")
def ads() -> Iterator[AdServer]:
    with AdServer() as server:
        yield server


def test_the_chosen_hosts_are_on_the_installed_lists(settings: Settings) -> None:
    folder = settings.filter_lists_dir
    assert "||adnxs.com^\n" in (folder / "easylist.txt").read_text()
    privacy = (folder / "easyprivacy.txt").read_text()
    assert "||scorecardresearch.com^$third-party\n" in privacy
    assert "||quantserve.com^$script,third-party\n" in privacy


def _capture(settings: Settings, *options: CaptureOptions) -> list[CaptureResult]:
    async def scenario() -> list[CaptureResult]:
        async with capture_stack(settings, slots=1, hosts=HOSTS) as stack:
            return [await stack.engine.capture(each) for each in options]

    return asyncio.run(scenario())


def _image(result: CaptureResult) -> Image.Image:
    return Image.open(io.BytesIO(result.artifacts[0].data)).convert("RGB")


def _region(image: Image.Image, left: int, top: int, width: int, height: int) -> set[Any]:
    colors = image.crop((left, top, left + width, top + height)).getcolors(width * height)
    return {color for _, color in colors or []}


def test_blocked_ads_and_trackers_are_never_requested_and_leave_empty_slots(
    settings: Settings, ads: AdServer
) -> None:
    page = ads.url("127.0.0.1", "/news")
    ads.hits.clear()
    plain, blocked, ads_only = _capture(
        settings,
        CaptureOptions(url=page, evidence=False),
        CaptureOptions(url=page, evidence=False, block_ads=True, block_trackers=True),
        CaptureOptions(url=page, evidence=False, block_ads=True),
    )
    hosts = [host for host, _ in ads.hits]
    # Without blocking both hosts are asked (once); with both lists neither is; with ads only,
    # the tracker is asked a second time and the ad host never again.
    assert hosts.count(AD_HOST) == 1 and hosts.count(TRACKER_HOST) == 2
    assert hosts.count("127.0.0.1") == 6  # the page and its own logo, three times

    assert plain.metadata["blocked_requests"] == []
    assert "hidden_by_filters" not in plain.metadata
    shown = _image(plain)
    assert _region(shown, *AD_SLOT) == {(255, 0, 0)}  # the ad, as a control

    assert sorted(blocked.metadata["blocked_requests"], key=lambda entry: entry["reason"]) == [
        {"url": ads.url(AD_HOST, "/banner"), "reason": "ad"},
        {"url": ads.url(TRACKER_HOST, "/pixel.png"), "reason": "tracker"},
    ]
    image = _image(blocked)
    assert _region(image, *AD_SLOT) == {BACKGROUND}  # no frame, no error page
    assert _region(image, 400, 120, 40, 40) == {BACKGROUND}  # no broken-image icon
    assert _region(image, 400, 200, 40, 40) == {(0, 0, 255)}  # the page's own image stays
    assert _region(image, 400, 300, 40, 40) == {BACKGROUND}  # hidden by `##.ADBox`
    hidden = blocked.metadata["hidden_by_filters"]
    assert hidden["elements"] == 3
    assert set(hidden["selectors"]) == {"[data-snapshotd-blocked]", ".ADBox"}

    assert ads_only.metadata["blocked_requests"] == [
        {"url": ads.url(AD_HOST, "/banner"), "reason": "ad"}
    ]


def test_first_party_requests_and_the_page_host_itself_are_not_blocked(
    settings: Settings, ads: AdServer
) -> None:
    ads.hits.clear()
    own_site, ad_page = _capture(
        settings,
        # `$third-party`: the tracker's own site loads its pixel.
        CaptureOptions(url=ads.url(TRACKER_SITE, "/own-site"), evidence=False, block_trackers=True),
        # The page asked for is never blocked, even on a listed host.
        CaptureOptions(url=ads.url(AD_HOST, "/banner"), evidence=False, block_ads=True),
    )
    assert (TRACKER_HOST, "/pixel.png") in ads.hits and (AD_HOST, "/banner") in ads.hits
    assert own_site.metadata["blocked_requests"] == []
    assert ad_page.metadata["blocked_requests"] == [] and ad_page.metadata["http_status"] == 200
    assert _region(_image(ad_page), 0, 0, 100, 100) == {(255, 0, 0)}


def test_an_https_host_blocked_at_connect_is_not_reported_as_an_egress_refusal(
    settings: Settings, ads: AdServer
) -> None:
    ads.hits.clear()
    (result,) = _capture(
        settings,
        CaptureOptions(url=ads.url("127.0.0.1", "/secure-ad"), evidence=False, block_ads=True),
    )
    assert not ads.requested(AD_HOST)
    host = f"{AD_HOST}:{ads.port}"
    assert result.metadata["blocked_requests"] == [{"url": f"https://{host}/", "reason": "ad"}]
    assert result.metadata["hidden_by_filters"]["elements"] == 1
    assert _region(_image(result), 0, 0, 40, 40) == {BACKGROUND}


def test_egress_refusals_are_still_reported_and_enforced_with_blocking_on(
    settings: Settings, pages: PageServer, canary: PageServer
) -> None:
    (result,) = _capture(
        settings,
        CaptureOptions(
            url=pages.url + "/subresources", evidence=False, block_ads=True, block_trackers=True
        ),
    )
    assert not canary.hits
    refused = result.metadata["blocked_requests"]
    assert refused and {entry["reason"] for entry in refused} == {EGRESS_REFUSED}
    assert any(entry["url"] == canary.url + "/img.png" for entry in refused)


async def _connect(proxy: str, authority: str) -> bytes:
    port = int(proxy.rpartition(":")[2])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    writer.close()
    return head


def test_a_lane_refuses_a_listed_host_at_connect_time_and_only_by_host(
    settings: Settings, ads: AdServer
) -> None:
    lists = FilterLists(settings.filter_lists_dir)

    async def scenario() -> None:
        policy = EgressPolicy(["127.0.0.1/32"], hosts=HOSTS)
        async with EgressGuard(policy) as guard:
            rules = PageRules("https://news.example/", await lists.engines(["ad", "tracker"]))
            async with guard.lane(rules) as lane:
                async with httpx.AsyncClient(proxy=lane.url) as client:
                    with pytest.raises(httpx.ProxyError):
                        await client.get(f"https://{AD_HOST}/")
                assert guard.requests == 0  # refused before any lookup or connection
                head = await _connect(lane.url, f"{AD_HOST}:443")
                assert head.startswith(b"HTTP/1.1 403 ")
                assert f"{DENIED_HEADER}: filtered".encode() in head
                # Its scripts are listed, its host is not: the tunnel opens.
                opened = await _connect(lane.url, f"{SCRIPT_ONLY_HOST}:{ads.port}")
                assert opened.startswith(b"HTTP/1.1 200 ")
                # Over plain http the full URL and the kind of load decide.
                script = ads.url(SCRIPT_ONLY_HOST, "/quant.js")
                headers = {"sec-fetch-dest": "script"}
                async with httpx.AsyncClient(proxy=lane.url) as client:
                    answer = await client.get(script, headers=headers)
                    assert answer.status_code == 204 and answer.content == b""
                    assert answer.headers[DENIED_HEADER] == "filtered"
                    image = ads.url(SCRIPT_ONLY_HOST, "/pixel.png")
                    shown = await client.get(image, headers={"sec-fetch-dest": "image"})
                    assert shown.status_code == 200
                assert lane.blocked == [
                    {"url": f"https://{AD_HOST}/", "reason": "ad"},
                    {"url": script, "reason": "tracker"},
                ]
                assert lane.tunnels_blocked == {AD_HOST}

    asyncio.run(scenario())


def test_missing_lists_fail_the_capture_with_what_to_do(settings: Settings, ads: AdServer) -> None:
    elsewhere = settings.model_copy(update={"filter_lists_dir": settings.data_dir / "nothing"})
    with pytest.raises(CaptureFailed, match="SNAPSHOTD_FILTER_LISTS_DIR"):
        _capture(elsewhere, CaptureOptions(url=ads.url("127.0.0.1", "/news"), block_ads=True))
