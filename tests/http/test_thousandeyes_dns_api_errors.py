"""`dns-server` and `api` test bodies the v7 surface refuses: each a 400 in the SDK's
`ValidationError` shape naming the field, and nothing stored. No worker runs here."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from snapshotd.config import Settings
from snapshotd.http.app import create_app
from snapshotd.services import accounts, agents
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from tests.http.test_thousandeyes_errors import v7_invalid

SERVER = "192.0.2.53"  # documentation range: reserved, so refused like a private address


@pytest.fixture
def te(api: TestClient, db: Database, token: str) -> tuple[TestClient, dict[str, str], str]:
    agent_id = agents.Agents(db).register("host-a", location="Local", country_id="").id
    return api, {"Authorization": f"Bearer {token}"}, str(agent_id)


def dns_body(agent: str, **fields: Any) -> dict[str, Any]:
    return {
        "interval": 60,
        "testName": "DNS",
        "domain": "example.com A",
        "dnsServers": ["8.8.8.8"],
        "agents": [{"agentId": agent}],
        **fields,
    }


def api_body(agent: str, *requests: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "interval": 60,
        "url": "https://api.example.com/",
        "requests": list(requests) or [{"name": "a", "url": "https://api.example.com/a"}],
        "agents": [{"agentId": agent}],
        **fields,
    }


DNS_CASES = [
    ({"dnsServers": ["10.1.2.3"]}, "dnsServers", "10.1.2.3 is a private address"),
    ({"dnsServers": ["127.0.0.2:5353"]}, "dnsServers", "127.0.0.2 is a loopback address"),
    ({"dnsServers": ["169.254.169.254"]}, "dnsServers", "metadata"),
    ({"dnsServers": [SERVER]}, "dnsServers", SERVER),
    ({"dnsServers": []}, "dnsServers", "at least one"),
    ({"dnsServers": ["8.8.8.8:99999"]}, "dnsServers", "port"),
    ({"dnsServers": [5]}, "dnsServers", "string"),
    ({"domain": "example.com BOGUS"}, "domain", "record type"),
    ({"domain": ""}, "domain", "domain name"),
    ({"dnsTransportProtocol": "dot"}, "dnsTransportProtocol", "udp or tcp"),
    ({"dnsQueryClass": "ch"}, "dnsQueryClass", "Internet"),
]


def test_bad_dns_server_tests_are_refused(te: tuple[TestClient, dict[str, str], str]) -> None:
    api, auth, agent = te
    for fields, field, words in DNS_CASES:
        answer = api.post("/v7/tests/dns-server", json=dns_body(agent, **fields), headers=auth)
        assert words in v7_invalid(answer, field)["detail"], fields
    assert api.get("/v7/tests/dns-server", headers=auth).json()["tests"] == []


API_CASES = [
    ({"name": "a", "url": "ftp://files.example.com/"}, "scheme"),
    ({"name": "a", "url": "https://x/{{later}}"}, "{{later}}"),
    ({"name": "a", "url": "https://x/", "method": "trace"}, "method"),
    ({"name": "a", "url": "https://x/", "authType": "basic"}, "Authorization header"),
    (
        {
            "name": "a",
            "url": "https://x/",
            "assertions": [{"name": "status-code", "operator": "includes", "value": "200"}],
        },
        "takes is, is-not",
    ),
    (
        {
            "name": "a",
            "url": "https://x/",
            "assertions": [{"name": "status-code", "operator": "is", "value": "ok"}],
        },
        "status code",
    ),
    (
        {
            "name": "a",
            "url": "https://x/",
            "assertions": [{"name": "response-body", "operator": "matches", "value": "("}],
        },
        "regular expression",
    ),
    (
        {"name": "a", "url": "https://x/", "variables": [{"name": "t", "value": "token"}]},
        "JSON path",
    ),
    (
        {"name": "a", "url": "https://x/", "headers": [{"key": "Bad Name", "value": "1"}]},
        "header",
    ),
    ({"name": "a", "url": "https://x/", "waitTimeMs": -1}, "wait_ms"),
    ("not an object", "each request"),
]


def test_bad_api_tests_are_refused(te: tuple[TestClient, dict[str, str], str]) -> None:
    api, auth, agent = te
    for request, words in API_CASES:
        answer = api.post("/v7/tests/api", json=api_body(agent, request), headers=auth)
        assert words in v7_invalid(answer, "requests")["detail"], request
    twice = {"name": "same", "url": "https://x/"}
    answer = api.post("/v7/tests/api", json=api_body(agent, twice, twice), headers=auth)
    assert "name of its own" in v7_invalid(answer, "requests")["detail"]
    answer = api.post("/v7/tests/api", json=api_body(agent, timeLimit=999), headers=auth)
    v7_invalid(answer, "timeLimit")
    answer = api.post("/v7/tests/api", json={**api_body(agent), "requests": []}, headers=auth)
    v7_invalid(answer, "requests")
    assert api.get("/v7/tests/api", headers=auth).json()["tests"] == []


def test_an_update_changes_only_what_it_sends(
    settings: Settings, any_db: Database, blobs: FileBlobStore
) -> None:
    """On SQLite and PostgreSQL: the settings are merged in the test's JSON config."""
    token = accounts.Accounts(any_db).create_token(org="acme", email="ops@acme.test", role="admin")
    agent = str(agents.Agents(any_db).register("host-a", location="Local", country_id="").id)
    auth = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(settings, db=any_db, blobs=blobs)) as api:
        _update_merges(api, auth, agent)


def _update_merges(api: TestClient, auth: dict[str, str], agent: str) -> None:
    created = api.post("/v7/tests/dns-server", json=dns_body(agent), headers=auth).json()
    path = f"/v7/tests/dns-server/{created['testId']}"
    changed = api.put(path, json={"dnsTransportProtocol": "tcp"}, headers=auth)
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["dnsTransportProtocol"] == "tcp" and body["domain"] == "example.com. A"
    assert body["dnsServers"] == [{"serverId": "1", "serverName": "8.8.8.8"}]
    refused = api.put(path, json={"dnsServers": ["10.0.0.1"]}, headers=auth)
    v7_invalid(refused, "dnsServers")
    assert api.get(path, headers=auth).json()["dnsServers"][0]["serverName"] == "8.8.8.8"
    gone = api.get(f"/v7/test-results/{created['testId']}/api/agent/{agent}/round/1", headers=auth)
    assert gone.status_code == 404
