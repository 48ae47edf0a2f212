"""Agent-to-server tests, network results and path visualization through the official
`thousandeyes-sdk-tests` / `-test-results` / `-snapshots` 6.0.0 clients, against a real server
whose real worker probes listeners this test opens on loopback.

The egress allowlist here names `localhost` rather than 127.0.0.1/32: the literal loopback
address is then refused when a test is saved, and `vm`, a name that also resolves to 127.0.0.1,
is refused at probe time."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import sync_playwright
from thousandeyes_sdk import snapshots as te_snapshots
from thousandeyes_sdk import tests as te_tests
from thousandeyes_sdk.agents import CloudAndEnterpriseAgentsApi
from thousandeyes_sdk.core import ApiClient
from thousandeyes_sdk.core.exceptions import BadRequestException, NotFoundException
from thousandeyes_sdk.test_results import NetworkTestResultsApi, WebHTTPServerTestResultsApi
from thousandeyes_sdk.tests import AgentToServerTestRequest, AgentToServerTestsApi

from snapshotd.config import Settings
from tests.http.test_thousandeyes_sdk import EMAIL, client, server, token  # noqa: F401
from tests.pages import PageServer

PROBES = 10


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        egress_allow=["localhost"],
        job_lease_seconds=5,
        poll_interval_seconds=0.05,
        capture_timeout_ms=10_000,
    )


@pytest.fixture
def lossy() -> Iterator[socket.socket]:
    """A listener that never accepts, with the shortest queue: once the queue is full the
    kernel drops further SYNs, so some probes of a train are answered and the rest are lost."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        yield listener


def _queued(listener: socket.socket) -> int:
    """How many handshakes completed: the connections waiting in the listener's queue."""
    listener.setblocking(False)
    count = 0
    while True:
        try:
            connection, _ = listener.accept()
        except BlockingIOError:
            return count
        connection.close()
        count += 1


def _wait(read: Callable[[], list[Any]], what: str) -> list[Any]:
    deadline = time.monotonic() + 30
    while not (found := read()):
        assert time.monotonic() < deadline, f"no {what} came"
        time.sleep(0.2)
    return found


def test_agent_to_server_tests_measure_loss_latency_and_path(
    client: ApiClient,  # noqa: F811
    server: str,  # noqa: F811
    token: str,  # noqa: F811
    pages: PageServer,
    settings: Settings,
    lossy: socket.socket,
) -> None:
    agent = CloudAndEnterpriseAgentsApi(client).get_agents().agents[0].actual_instance
    runs_on = [te_tests.TestAgentWithSourceIpRequest(agent_id=agent.agent_id)]
    tests_api = AgentToServerTestsApi(client)
    port = lossy.getsockname()[1]

    def a2s(name: str, target: str, **fields: Any) -> AgentToServerTestRequest:
        return AgentToServerTestRequest(
            interval=te_tests.TestInterval.NUMBER_60,
            server=target,
            test_name=name,
            agents=runs_on,
            **fields,
        )

    created = tests_api.create_agent_to_server_test(a2s("Lossy", "localhost", port=port))
    assert created is not None and created.server == f"localhost:{port}"
    assert created.protocol == te_tests.TestProtocol.TCP and created.type == "agent-to-server"
    refused_later = tests_api.create_agent_to_server_test(a2s("Named", f"vm:{port}"))
    assert refused_later is not None
    web = te_tests.HTTPServerTestsApi(client).create_http_server_test(
        te_tests.HttpServerTestRequest(
            interval=te_tests.TestInterval.NUMBER_60,
            url=pages.url.replace("127.0.0.1", "localhost") + "/",
            test_name="Web",
            agents=runs_on,
        )
    )
    quiet = te_tests.HTTPServerTestsApi(client).create_http_server_test(
        te_tests.HttpServerTestRequest(
            interval=te_tests.TestInterval.NUMBER_60,
            url=pages.url.replace("127.0.0.1", "localhost") + "/",
            test_name="Web without network measurements",
            agents=runs_on,
            network_measurements=False,
        )
    )
    assert web is not None and quiet is not None and quiet.network_measurements is False

    # A literal address the egress policy refuses is refused when the test is saved.
    with pytest.raises(BadRequestException) as denied:
        tests_api.create_agent_to_server_test(a2s("Loopback", f"127.0.0.1:{port}"))
    assert denied.value.data.errors[0].var_field == "server"
    assert "loopback" in (denied.value.data.detail or "")
    with pytest.raises(BadRequestException):
        tests_api.create_agent_to_server_test(a2s("Conflict", "localhost:81", port=82))

    listed = tests_api.get_agent_to_server_tests().tests or []
    assert [t.test_id for t in listed] == [created.test_id, refused_later.test_id]
    renamed = tests_api.update_agent_to_server_test(
        created.test_id, te_tests.UpdateAgentToServerTestRequest(test_name="Lossy listener")
    )
    assert renamed is not None and renamed.server == f"localhost:{port}"
    assert tests_api.get_agent_to_server_test(created.test_id).test_name == "Lossy listener"

    results = NetworkTestResultsApi(client)
    measured = _wait(
        lambda: results.get_test_network_results(created.test_id, window="10m").results or [],
        "network round",
    )[0]
    answered = _queued(lossy)
    assert 0 < answered < PROBES
    assert measured.loss == 100 * (PROBES - answered) / PROBES
    assert measured.min_latency <= measured.avg_latency <= measured.max_latency
    assert measured.jitter is not None and measured.jitter >= 0
    assert measured.server_ip == "127.0.0.1" and measured.agent.agent_id == agent.agent_id

    paths = results.get_test_path_vis_results(created.test_id, window="10m").results or []
    assert [(p.path_traces[0].ip_address, p.path_traces[0].number_of_hops) for p in paths] == [
        ("127.0.0.1", 1)
    ]
    detail = results.get_test_path_vis_agent_round_results(
        created.test_id, agent.agent_id, str(measured.round_id)
    ).results
    hops = detail[0].path_traces[0].hops
    assert [(h.hop, h.ip_address, h.rdns) for h in hops] == [(1, "127.0.0.1", "localhost")]

    # A name whose address the policy refuses is an error round, and has no path to show.
    named = _wait(
        lambda: results.get_test_network_results(refused_later.test_id).results or [],
        "error round",
    )[0]
    assert "vm resolves to 127.0.0.1" in (named.error_details or "") and named.loss is None
    with pytest.raises(BadRequestException) as no_path:
        results.get_test_path_vis_results(refused_later.test_id)
    assert "loopback" in (no_path.value.data.detail or "")

    beside = _wait(
        lambda: results.get_test_network_results(web.test_id).results or [], "http network round"
    )[0]
    # The page server's short listen queue may drop a SYN of the burst on a busy machine.
    assert beside.loss < 100 and beside.avg_latency is not None
    assert beside.server == f"localhost:{urlsplit(pages.url).port}"
    with pytest.raises(NotFoundException):
        results.get_test_network_results("999999")
    http_results = WebHTTPServerTestResultsApi(client)
    _wait(lambda: http_results.get_test_http_server_results(quiet.test_id).results or [], "round")
    assert results.get_test_network_results(quiet.test_id).results == []

    now = datetime.now(UTC)
    snapshot = te_snapshots.TestSnapshotsApi(client).create_test_snapshot(
        created.test_id,
        te_snapshots.SnapshotRequest(
            display_name="Lossy hour",
            start_date=now - timedelta(hours=1),
            end_date=now,
            is_public=True,
        ),
    )
    assert snapshot is not None and snapshot.test.type == "agent-to-server"
    tests_api.delete_agent_to_server_test(created.test_id)
    frozen = results.get_test_network_results(snapshot.test_id).results or []
    assert (frozen[0].round_id, frozen[0].loss) == (measured.round_id, measured.loss)
    frozen_path = results.get_test_path_vis_results(snapshot.test_id).results or []
    assert frozen_path[0].path_traces[0].ip_address == "127.0.0.1"

    view_url = snapshot.links.app_link.href
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=settings.chromium_path)
        try:
            page = browser.new_page()
            page.goto(view_url)
            assert page.locator("h1").inner_text() == "Lossy hour"
            row = page.locator("table.network tbody tr").first.inner_text()
            assert f"{measured.loss:g}" in row
            assert "127.0.0.1" in page.locator("ol.path").inner_text()
        finally:
            browser.close()
    image = httpx.get(view_url + "/image")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"

    # The v6 call snapshots a network test too, and its copy reads back the same rounds.
    end = datetime.now(UTC).replace(microsecond=0)
    v6 = httpx.post(
        server + "/v6/snapshot.json",
        json={
            "testId": int(web.test_id),
            "displayName": "v6 network",
            "from": (end - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S"),
            "to": end.strftime("%Y-%m-%d %H:%M:%S"),
            "isPublic": 1,
        },
        auth=(EMAIL, token),
    )
    assert v6.status_code == 201, v6.text
    copied = results.get_test_network_results(str(v6.json()["link"]["testId"])).results or []
    assert copied and copied[0].round_id >= beside.round_id and copied[0].loss is not None
