"""The console's synthetic test pages through the ASGI app: the tests of the user's account
groups, one test's recent rounds and the snapshots frozen from it with their share links. Tests
and snapshots are made through the ThousandEyes v7 API; rounds are run through the service layer
(scheduled, claimed and finished as a worker does) with results written in the probe's shape."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from snapshotd.http.deps import Services
from snapshotd.services import agents
from snapshotd.services.accounts import Accounts
from snapshotd.store.db import Database
from tests.console.conftest import sign_in

OK = {"response_code": 200, "response_time": 80, "total_time": 1234, "error_type": None}
REFUSED = {"error_type": "Connect", "error_details": "connection refused", "response_time": None}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def create_test(client: TestClient, token: str, agent_id: int, name: str = "Shop home") -> int:
    body = {
        "testName": name,
        "url": "https://shop.example/",
        "interval": 300,
        "agents": [{"agentId": str(agent_id)}],
    }
    answer = client.post("/v7/tests/http-server", headers=bearer(token), json=body)
    assert answer.status_code == 201, answer.text
    return int(answer.json()["testId"])


def run_rounds(services: Services, agent_id: int, results: list[dict[str, Any]]) -> None:
    """Schedules one round per result, oldest first, and finishes each as a worker would."""
    now = time.time()
    for back, result in zip(range(len(results) - 1, -1, -1), results, strict=True):
        assert services.synthetic.schedule(agent_id, now - 300 * back) == 1
        claim = services.queue.claim("console-test", agent_id)
        assert claim is not None
        assert services.synthetic.start_round(claim) is not None
        services.synthetic.finish_round(claim, {**result, "date": "2025-01-01T00:00:00Z"})


@pytest.fixture
def services(client: TestClient) -> Services:
    found: Services = client.app.state.services  # type: ignore[attr-defined]
    return found


@pytest.fixture
def agent_id(db: Database) -> int:
    return agents.Agents(db).register("probe-host-1", location="Local", country_id="").id


@pytest.fixture
def signed_in(client: TestClient, admin_token: str) -> str:
    return sign_in(client, admin_token)


def test_empty_list_says_how_to_create_one(client: TestClient, signed_in: str) -> None:
    page = client.get("/console/tests")
    assert page.status_code == 200 and "No tests yet" in page.text
    assert "POST /v7/tests/http-server" in page.text
    assert 'aria-current="page">Tests' in page.text


def test_list_rounds_and_snapshots_with_share_links(
    client: TestClient, services: Services, admin_token: str, agent_id: int, signed_in: str
) -> None:
    test_id = create_test(client, admin_token, agent_id)
    quiet = create_test(client, admin_token, agent_id, "Quiet one")
    client.put(
        f"/v7/tests/http-server/{quiet}", headers=bearer(admin_token), json={"enabled": False}
    )

    listing = client.get("/console/tests").text
    assert f'href="/console/tests/{test_id}">Shop home</a>' in listing
    assert "HTTP server" in listing and "https://shop.example/" in listing and "5 min" in listing
    assert "Disabled" in listing and '<th scope="col">Interval</th>' in listing

    assert "No rounds yet" in client.get(f"/console/tests/{test_id}").text
    run_rounds(services, agent_id, [OK, REFUSED])
    page = client.get(f"/console/tests/{test_id}").text
    assert "probe-host-1" in page and "1,234" in page and "Connect: connection refused" in page
    rows = page[page.index("<tbody>") :]
    assert rows.index("Error") < rows.index(">OK<"), "the newest round comes first"
    assert "No snapshots of this test yet" in page

    end = datetime.now(UTC)
    frozen = client.post(
        f"/v7/tests/{test_id}/snapshot",
        headers=bearer(admin_token),
        json={
            "displayName": "Outage window",
            "startDate": (end - timedelta(hours=1)).isoformat(),
            "endDate": end.isoformat(),
            "isPublic": True,
        },
    )
    assert frozen.status_code == 201, frozen.text
    share_id = frozen.json()["id"]
    page = client.get(f"/console/tests/{test_id}").text
    snapshot_link = page[page.index('href="/console/snapshots/snp_') :].split('"')[1]
    assert "Outage window" in page and f"/s/{share_id}" in page
    assert client.get(snapshot_link).status_code == 200
    assert client.get(f"{snapshot_link}/thumbnail").status_code == 200
    assert "Outage window" not in client.get("/console/tests").text, "saved copies are not tests"


def test_unknown_and_other_organizations_tests_are_not_found(
    client: TestClient, db: Database, agent_id: int, signed_in: str
) -> None:
    other = Accounts(db).create_token(org="globex", email="ops@globex.test", role="admin")
    theirs = create_test(client, other, agent_id, "Globex internal")
    for path in (f"/console/tests/{theirs}", "/console/tests/999999", "/console/tests/x1"):
        answer = client.get(path)
        assert answer.status_code == 404, (path, answer.text)
    assert "Globex internal" not in client.get("/console/tests").text
    assert client.get("/console/tests/1?before=soon").status_code in (400, 404)
