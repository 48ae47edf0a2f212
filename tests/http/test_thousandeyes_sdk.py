"""The official `thousandeyes-sdk-*` 6.0.0 clients against a real server with a real worker: an
agent, an http-server test that really runs, its results, a snapshot whose page opens in Chromium,
and the v6 snapshot call with curl-style requests in JSON and XML."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree

import httpx
import pytest
from playwright.sync_api import sync_playwright
from thousandeyes_sdk import snapshots as te_snapshots
from thousandeyes_sdk import tests as te_tests
from thousandeyes_sdk.agents import CloudAndEnterpriseAgentsApi
from thousandeyes_sdk.core import ApiClient, Configuration
from thousandeyes_sdk.test_results import (
    WebHTTPServerTestResultsApi,
    WebPageLoadTestResultsApi,
)
from thousandeyes_sdk.tests import HttpServerTestRequest, HTTPServerTestsApi

from snapshotd.config import Settings
from snapshotd.http.app import create_app
from snapshotd.services.accounts import Accounts
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from snapshotd.worker import Worker
from tests.pages import PageServer
from tests.servers import serving

EMAIL = "ops@acme.test"


@pytest.fixture
def server(settings: Settings, db: Database, blobs: FileBlobStore, worker: Worker) -> Iterator[str]:
    with serving(create_app(settings, db=db, blobs=blobs, worker=worker)) as url:
        yield url


@pytest.fixture
def token(db: Database) -> str:
    return Accounts(db).create_token(org="acme", email=EMAIL, role="admin")


@pytest.fixture
def client(server: str, token: str) -> Iterator[ApiClient]:
    with ApiClient(Configuration(host=server + "/v7", access_token=token)) as api:
        yield api


def wait_for_rounds(results: WebHTTPServerTestResultsApi, test_id: str, count: int) -> list:
    deadline = time.monotonic() + 100
    while True:
        found = results.get_test_http_server_results(test_id, window="10m").results or []
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"only {len(found)} rounds ran"
        time.sleep(0.5)


def test_the_official_sdks_run_a_test_and_snapshot_it(
    client: ApiClient, server: str, token: str, pages: PageServer, settings: Settings
) -> None:
    agents = CloudAndEnterpriseAgentsApi(client).get_agents().agents or []
    assert len(agents) == 1
    agent = agents[0].actual_instance
    # The SDK reads an agent as its first matching schema and keeps agentState as an extra field.
    assert agent.agent_id and agent.agent_name and agent.to_dict()["agentState"] == "online"

    tests_api = HTTPServerTestsApi(client)
    runs_on = [te_tests.TestAgentWithSourceIpRequest(agent_id=agent.agent_id)]

    def http_test(name: str, url: str, **settings: object) -> HttpServerTestRequest:
        return HttpServerTestRequest(
            interval=te_tests.TestInterval.NUMBER_60,
            url=url,
            test_name=name,
            agents=runs_on,
            **settings,
        )

    created = tests_api.create_http_server_test(http_test("Home page", pages.url + "/"))
    # A target that never answers, and one the egress guard refuses: both record error rounds
    # while the scheduler keeps every test on time.
    hanging = tests_api.create_http_server_test(
        http_test("Stalls", pages.url + "/stall", http_time_limit=5)
    )
    refused = tests_api.create_http_server_test(http_test("Private", "http://10.255.255.1/"))
    page_load = te_tests.PageLoadTestsApi(client).create_page_load_test(
        te_tests.PageLoadTestRequest(
            interval=te_tests.TestInterval.NUMBER_60,
            url=pages.url + "/subresources",
            test_name="Page with parts",
            agents=[te_tests.TestAgentRequest(agent_id=agent.agent_id)],
        )
    )
    assert hanging is not None and refused is not None and page_load is not None
    assert created is not None and created.test_id and created.url == pages.url + "/"
    assert created.interval == te_tests.TestInterval.NUMBER_60 and created.enabled is True
    listed = te_tests.TestsApi(client).get_tests().tests or []
    assert [t.test_id for t in listed] == [
        created.test_id,
        hanging.test_id,
        refused.test_id,
        page_load.test_id,
    ]

    rounds = wait_for_rounds(WebHTTPServerTestResultsApi(client), created.test_id, 2)
    first = rounds[0]
    assert first.response_code == 200 and first.error_type is None
    assert first.total_time is not None and first.total_time >= (first.connect_time or 0)
    assert first.agent is not None and first.agent.agent_id == agent.agent_id
    assert rounds[1].round_id - first.round_id == 60

    results_api = WebHTTPServerTestResultsApi(client)
    stalled = wait_for_rounds(results_api, hanging.test_id, 2)
    assert [r.error_type for r in stalled] == ["Timeout", "Timeout"]
    assert all(5000 <= (r.total_time or 0) < 8000 for r in stalled)
    assert stalled[1].round_id - stalled[0].round_id == 60
    denied = wait_for_rounds(results_api, refused.test_id, 1)[0]
    assert denied.error_type == "Egress" and "private" in (denied.error_details or "")
    loads = WebPageLoadTestResultsApi(client).get_test_page_load_results(
        page_load.test_id, window="10m"
    )
    loaded = (loads.results or [])[0]
    assert "errorType" not in loaded.to_dict() and (loaded.num_objects or 0) > 1
    assert (loaded.dom_load_time or 0) <= (loaded.page_load_time or 0)

    now = datetime.now(UTC)
    snapshot = te_snapshots.TestSnapshotsApi(client).create_test_snapshot(
        created.test_id,
        te_snapshots.SnapshotRequest(
            display_name="Home page incident",
            start_date=now - timedelta(hours=1),
            end_date=now,
            is_public=True,
        ),
    )
    assert snapshot is not None and snapshot.source_test_id == created.test_id
    assert snapshot.test_id != created.test_id and snapshot.links is not None
    view_url = snapshot.links.app_link.href

    # Later rounds, an edit and even deleting the source change nothing in the snapshot.
    tests_api.delete_http_server_test(created.test_id)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=settings.chromium_path)
        try:
            page = browser.new_page()
            page.goto(view_url)
            assert page.locator("h1").inner_text() == "Home page incident"
            assert page.locator("tbody tr").count() >= 2
            assert "OK" in page.locator("tbody tr").first.inner_text()
        finally:
            browser.close()


def test_the_v6_snapshot_call_answers_json_and_xml(
    client: ApiClient, server: str, token: str, pages: PageServer
) -> None:
    agent_id = CloudAndEnterpriseAgentsApi(client).get_agents().agents[0].actual_instance.agent_id
    created = HTTPServerTestsApi(client).create_http_server_test(
        HttpServerTestRequest(
            interval=te_tests.TestInterval.NUMBER_60,
            url=pages.url + "/",
            test_name="Home",
            agents=[te_tests.TestAgentWithSourceIpRequest(agent_id=agent_id)],
        )
    )
    wait_for_rounds(WebHTTPServerTestResultsApi(client), created.test_id, 1)
    end = datetime.now(UTC).replace(microsecond=0)
    body = {
        "testId": int(created.test_id),
        "displayName": "v6 snapshot",
        "from": (end - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S"),
        "to": end.strftime("%Y-%m-%d %H:%M:%S"),
        "isPublic": 1,
    }
    answer = httpx.post(server + "/v6/snapshot.json", json=body, auth=(EMAIL, token))
    assert answer.status_code == 201, answer.text
    link = answer.json()["link"]
    assert link["sourceTestId"] == int(created.test_id) and isinstance(link["testId"], int)
    assert link["endRoundId"] - link["startRoundId"] == 7200
    assert httpx.get(link["viewUrl"]).status_code == 200

    xml = httpx.post(server + "/v6/snapshot?format=xml", json=body, auth=(EMAIL, token))
    assert xml.status_code == 201 and xml.headers["content-type"].startswith("text/xml")
    root = ElementTree.fromstring(xml.content)
    assert root.findtext("link/displayName") == "v6 snapshot"

    bad = httpx.post(
        server + "/v6/snapshot.xml", json={**body, "to": body["from"]}, auth=(EMAIL, token)
    )
    assert bad.status_code == 400
    assert "from" in (ElementTree.fromstring(bad.content).findtext("errors/error") or "")
