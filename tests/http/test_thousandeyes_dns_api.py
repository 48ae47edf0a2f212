"""The official `thousandeyes-sdk-*` 6.0.0 clients create, run, read and snapshot `dns-server` and
`api` tests against a real server and worker; the probes ask a dnspython DNS server and call a
JSON API, both on loopback."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import sync_playwright
from thousandeyes_sdk import snapshots as te_snapshots
from thousandeyes_sdk import tests as te_tests
from thousandeyes_sdk.agents import CloudAndEnterpriseAgentsApi
from thousandeyes_sdk.core import ApiClient
from thousandeyes_sdk.core.exceptions import BadRequestException
from thousandeyes_sdk.test_results import APITestResultsApi, DNSServerTestResultsApi

from snapshotd.config import Settings
from snapshotd.engines.stack import capture_stack
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from snapshotd.worker import Worker, WorkerThreads
from tests.api_server import PASSWORD, api_app
from tests.dns_server import DnsServer
from tests.http.test_thousandeyes_sdk import EMAIL, client, server, token  # noqa: F401  fixtures
from tests.servers import serving

# A name the guard resolves to a loopback address outside the test allowlist (127.0.0.1/32).
INSIDE = "internal.acme.test"


@pytest.fixture
def worker(settings: Settings, db: Database, blobs: FileBlobStore) -> Iterator[Worker]:
    runner = Worker(
        settings, db, blobs, stack=functools.partial(capture_stack, hosts={INSIDE: "127.0.0.2"})
    )
    threads = WorkerThreads([runner])
    threads.start()
    yield runner
    threads.stop(timeout=30)


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    with DnsServer() as running:
        yield running


@pytest.fixture
def json_api() -> Iterator[str]:
    with serving(api_app()) as url:
        yield url


def wait_for(read: Callable[[], list[Any]], count: int) -> list[Any]:
    deadline = time.monotonic() + 60
    while True:
        found = read()
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"only {len(found)} results came"
        time.sleep(0.25)


def snapshot_of(client: ApiClient, test_id: str, name: str) -> Any:  # noqa: F811
    now = datetime.now(UTC)
    made = te_snapshots.TestSnapshotsApi(client).create_test_snapshot(
        test_id,
        te_snapshots.SnapshotRequest(
            display_name=name, start_date=now - timedelta(hours=1), end_date=now, is_public=True
        ),
    )
    assert made is not None and made.source_test_id == test_id and made.test_id != test_id
    return made


def in_chromium(url: str, settings: Settings) -> tuple[str, int]:
    """A share page's text as real Chromium shows it, and the drawn width of its chart."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=settings.chromium_path)
        try:
            page = browser.new_page()
            page.goto(url)
            width = page.eval_on_selector("figure img", "image => image.naturalWidth")
            return page.locator("body").inner_text(), int(width)
        finally:
            browser.close()


def agent_id(client: ApiClient) -> str:  # noqa: F811
    return CloudAndEnterpriseAgentsApi(client).get_agents().agents[0].actual_instance.agent_id


def test_dns_server_tests_run_and_freeze(
    client: ApiClient,  # noqa: F811
    dns_server: DnsServer,
    settings: Settings,
) -> None:
    tests_api = te_tests.DNSServerTestsApi(client)
    runs_on = [te_tests.TestAgentRequest(agent_id=agent_id(client))]

    def dns_test(name: str, domain: str, servers: list[str], **options: Any) -> Any:
        return tests_api.create_dns_server_test(
            te_tests.DnsServerTestRequest(
                interval=te_tests.TestInterval.NUMBER_60,
                test_name=name,
                domain=domain,
                dns_servers=servers,
                agents=runs_on,
                **options,
            )
        )

    # A server at an address the egress policy refuses is refused before anything runs.
    with pytest.raises(BadRequestException) as refused:
        dns_test("Private resolver", "www.acme.test A", ["10.0.0.53"])
    assert refused.value.status == 400 and "private" in (refused.value.body or "")
    assert "dnsServers" in (refused.value.body or "")
    with pytest.raises(BadRequestException):
        dns_test("No type", "www.acme.test NOPE", [dns_server.address])

    web = dns_test("Web record", "www.acme.test A", [dns_server.address])
    assert web is not None and web.domain == "www.acme.test. A" and web.type == "dns-server"
    assert [s.server_name for s in web.dns_servers] == [dns_server.address]
    assert web.dns_transport_protocol == te_tests.TestDnsTransportProtocol.UDP
    gone = dns_test(
        "Gone record",
        "missing.acme.test A",
        [dns_server.address],
        dns_transport_protocol=te_tests.TestDnsTransportProtocol.TCP,
    )
    assert gone is not None
    listed = tests_api.get_dns_server_tests().tests or []
    assert sorted(t.test_id for t in listed) == sorted([web.test_id, gone.test_id])

    results_api = DNSServerTestResultsApi(client)

    def results(test_id: str) -> list[Any]:
        return results_api.get_test_dns_servers_results(test_id, window="10m").results or []

    answered = wait_for(lambda: results(web.test_id), 1)[0]
    assert answered.server == dns_server.address and answered.server_id == "1"
    assert set(answered.mappings.split(", ")) == {"192.0.2.10", "192.0.2.11"}
    assert answered.error_details is None
    assert answered.resolution_time is not None and answered.resolution_time >= 0
    one = results_api.get_test_dns_server_result(web.test_id, "1", window="10m").results
    assert [r.mappings for r in one or []] == [answered.mappings]
    assert results_api.get_test_dns_server_result(web.test_id, "2", window="10m").results == []
    failed = wait_for(lambda: results(gone.test_id), 1)[0]
    assert "NXDOMAIN" in (failed.error_details or "") and failed.mappings is None
    assert dns_server.queries["tcp"] >= 1 and dns_server.queries["udp"] >= 1

    # An update sends the whole test, as the SDK does; only what changed is different.
    updated = tests_api.update_dns_server_test(
        gone.test_id,
        te_tests.DnsServerTestRequest(
            interval=te_tests.TestInterval.NUMBER_120,
            domain="mail.acme.test MX",
            dns_servers=[dns_server.address],
            agents=runs_on,
        ),
    )
    assert updated.domain == "mail.acme.test. MX" and updated.interval.value == 120
    assert updated.dns_transport_protocol == te_tests.TestDnsTransportProtocol.TCP

    frozen = snapshot_of(client, web.test_id, "Resolver incident")
    tests_api.delete_dns_server_test(web.test_id)
    kept = results_api.get_test_dns_servers_results(frozen.test_id, window="1h").results or []
    assert [r.mappings for r in kept] == [answered.mappings]
    page = httpx.get(frozen.links.app_link.href)
    assert page.status_code == 200 and "Resolver incident" in page.text
    assert "www.acme.test. 300 A 192.0.2.10" in page.text
    assert f"{dns_server.address} (udp)" in page.text
    shown, chart_width = in_chromium(frozen.links.app_link.href, settings)
    assert "Resolver incident" in shown and "www.acme.test. 300 A 192.0.2.10" in shown
    assert chart_width > 0
    image = httpx.get(frozen.links.app_link.href + "/image")
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")


def test_api_tests_run_steps_and_freeze(
    client: ApiClient,  # noqa: F811
    json_api: str,
    server: str,  # noqa: F811
    token: str,  # noqa: F811
    settings: Settings,
) -> None:
    api = json_api
    tests_api = te_tests.APITestsApi(client)
    runs_on = [te_tests.TestAgentRequest(agent_id=agent_id(client))]
    check = te_tests.ApiRequestAssertion
    steps = [
        te_tests.ApiRequest(
            name="login",
            url=f"{api}/login",
            method=te_tests.ApiRequestMethod.POST,
            headers=[te_tests.ApiRequestHeader(key="Content-Type", value="application/json")],
            body='{"user": "ada", "password": "{{password}}"}',
            assertions=[
                check(name="status-code", operator="is", value="200"),
                check(name="response-body", operator="includes", value="roles"),
            ],
            variables=[te_tests.ApiRequestVariable(name="token", value="$.token")],
        ),
        te_tests.ApiRequest(
            name="profile",
            url=f"{api}/profile",
            headers=[te_tests.ApiRequestHeader(key="Authorization", value="Bearer {{token}}")],
            assertions=[
                check(name="status-code", operator="is", value="200"),
                check(name="response-body", operator="is", value="$.plan=free"),
            ],
        ),
    ]
    created = tests_api.create_api_test(
        te_tests.ApiTestRequest(
            interval=te_tests.TestInterval.NUMBER_60,
            test_name="Login then profile",
            url=api,
            requests=steps,
            predefined_variables=[te_tests.ApiPredefinedVariable(name="password", value=PASSWORD)],
            agents=runs_on,
        )
    )
    assert created is not None and created.type == "api" and len(created.requests) == 2
    assert created.requests[1].assertions[1].value == "$.plan=free"
    assert created.requests[0].variables[0].name == "token"
    port = httpx.URL(api).port
    inside = tests_api.create_api_test(
        te_tests.ApiTestRequest(
            interval=te_tests.TestInterval.NUMBER_60,
            test_name="Internal",
            url=f"http://{INSIDE}:{port}/",
            requests=[te_tests.ApiRequest(name="inside", url=f"http://{INSIDE}:{port}/profile")],
            agents=runs_on,
        )
    )
    with pytest.raises(BadRequestException) as undefined:
        tests_api.create_api_test(
            te_tests.ApiTestRequest(
                interval=te_tests.TestInterval.NUMBER_60,
                url=api,
                requests=[te_tests.ApiRequest(name="x", url=f"{api}/{{{{nothing}}}}")],
                agents=runs_on,
            )
        )
    assert "{{nothing}}" in (undefined.value.body or "")

    results_api = APITestResultsApi(client)

    def results(test_id: str) -> list[Any]:
        return results_api.get_test_api_results(test_id, window="10m").results or []

    ran = wait_for(lambda: results(created.test_id), 1)[0]
    # The token from the first step opened the profile; the wrong plan failed one assertion.
    assert ran.completion == 50.0 and ran.error_type == "Assertion"
    assert "step 2 (profile): assertion 2 failed" in ran.error_details
    assert "got 'pro'" in ran.error_details
    assert ran.api_transaction_time is not None and ran.api_transaction_time > 0
    detail = results_api.get_test_api_agent_round_results(
        created.test_id, ran.agent.agent_id, str(ran.round_id)
    )
    login, profile = detail.results[0].requests
    assert (login.completion, profile.completion) == (100, 0)
    assert [a.has_failed for a in profile.assertions] == [False, True]
    assert profile.assert_error_count == 1 and login.assert_error_count == 0
    assert (profile.wait_time or 0) <= profile.api_call_time <= profile.step_time

    denied = wait_for(lambda: results(inside.test_id), 1)[0]
    assert denied.error_type == "Egress" and denied.completion == 0
    assert "127.0.0.2 is a loopback address" in denied.error_details

    # The v6 call freezes an API test the same way.
    end = datetime.now(UTC).replace(microsecond=0)
    v6 = httpx.post(
        server + "/v6/snapshot.json",
        json={
            "testId": int(created.test_id),
            "displayName": "v6 copy",
            "from": (end - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S"),
            "to": end.strftime("%Y-%m-%d %H:%M:%S"),
            "isPublic": 1,
        },
        auth=(EMAIL, token),
    )
    assert v6.status_code == 201, v6.text
    assert "2. profile: GET" in httpx.get(v6.json()["link"]["viewUrl"]).text

    frozen = snapshot_of(client, created.test_id, "Login trouble")
    kept = results_api.get_test_api_results(frozen.test_id, window="1h").results or []
    assert [(r.round_id, r.completion) for r in kept] == [(ran.round_id, 50.0)]
    page = httpx.get(frozen.links.app_link.href)
    assert page.status_code == 200 and "Login trouble" in page.text
    assert "1. login: POST" in page.text and "→ 200" in page.text
    assert "FAILED: response-body $.plan is &#39;free&#39;: got &#39;pro&#39;" in page.text
    shown, chart_width = in_chromium(frozen.links.app_link.href, settings)
    assert "Login trouble" in shown and "FAILED: response-body $.plan is 'free': got 'pro'" in shown
    assert chart_width > 0
