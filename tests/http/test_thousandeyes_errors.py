"""The ThousandEyes surfaces (`/v7/...`, `/v6/snapshot`) against bad input, other tenants, roles and
rate limits: exact statuses, the error shapes the official SDK types strictly, and nothing stored
when a request is refused. Also what a test snapshot freezes, how it is deleted, and cursor
pagination of results.

No worker runs here: rounds are inserted straight into `test_rounds`. Most tests use `api`
(SQLite); the ones whose queries differ between databases run on both through `any_db`.

Error shapes asserted (docs/thousandeyes.md §B1.4, §A2.3):
  v7 400: problem+json {type, title, status, detail, instance, errors: [{code, field, message}]}
  v7 401: problem+json {error, error_description}
  v7 other: problem+json {type, title, status, detail, instance}
  v6: {timestamp (ms), httpStatus, errors: ["field: message"], path}, as JSON or XML
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from xml.etree import ElementTree

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, insert, select

from snapshotd.config import Settings
from snapshotd.http.app import create_app
from snapshotd.services import accounts, agents
from snapshotd.services.synthetic import round_of
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from snapshotd.store.models import (
    AccountGroup,
    ProbeRound,
    RateEvent,
    Share,
    Snapshot,
    SyntheticTest,
)

EMAIL = "ops@acme.test"  # the conftest `token` fixture's user (org acme, admin)
PROBLEM = "application/problem+json"
ERROR_KEYS = {"type", "title", "status", "detail", "instance"}
WINDOWS = (1, 2, 4, 6, 12, 24, 48)
SDK_DATE = "%Y-%m-%dT%H:%M:%S.%f%z"  # how the SDK writes a date-time into a query string
V6_DATE = "%Y-%m-%d %H:%M:%S"
RESULT = {"response_code": 200, "response_time": 80, "total_time": 120, "error_type": None}


@dataclass
class Env:
    """One running API with an admin of org acme and one agent."""

    api: TestClient
    db: Database
    token: str
    agent_id: int

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def basic(self) -> tuple[str, str]:
        return (EMAIL, self.token)


def register_agent(db: Database, name: str = "host-a") -> int:
    return agents.Agents(db).register(name, location="Local", country_id="").id


@pytest.fixture
def te(api: TestClient, db: Database, token: str) -> Env:
    """SQLite only, like `api`."""
    return Env(api, db, token, register_agent(db))


@pytest.fixture
def te_any(settings: Settings, any_db: Database, blobs: FileBlobStore) -> Iterator[Env]:
    """The same on SQLite and PostgreSQL."""
    token = accounts.Accounts(any_db).create_token(org="acme", email=EMAIL, role="admin")
    agent_id = register_agent(any_db)
    with TestClient(create_app(settings, db=any_db, blobs=blobs)) as client:
        yield Env(client, any_db, token, agent_id)


# -- helpers --------------------------------------------------------------------------------------


def v7_error(response: Response, status: int) -> dict[str, Any]:
    """Asserts the SDK's `Error` shape (403, 404, 429, ...); returns the body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert set(body) == ERROR_KEYS, body
    assert body["status"] == status and type(body["status"]) is int, body
    assert body["type"] == "about:blank", body
    assert isinstance(body["title"], str) and body["title"], body
    assert isinstance(body["detail"], str) and body["detail"], body
    assert body["instance"] == response.request.url.path, body
    return body


def v7_invalid(response: Response, field: str) -> dict[str, Any]:
    """Asserts the SDK's `ValidationError` shape naming exactly `field`; returns the body."""
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert set(body) == ERROR_KEYS | {"errors"}, body
    assert body["status"] == 400 and type(body["status"]) is int, body
    assert body["instance"] == response.request.url.path, body
    assert isinstance(body["title"], str) and isinstance(body["detail"], str), body
    assert isinstance(body["errors"], list) and len(body["errors"]) == 1, body
    item = body["errors"][0]
    assert set(item) == {"code", "field", "message"}, body
    assert all(isinstance(value, str) for value in item.values()), body
    assert item["field"] == field, body
    assert item["message"], body
    return body


def v6_error(response: Response, status: int, field: str | None = None) -> str:
    """Asserts the v6 error body (JSON or XML, whichever was asked for), naming `field` when given;
    returns the message."""
    assert response.status_code == status, response.text
    media = response.headers["content-type"]
    if media.startswith("text/xml"):
        root = ElementTree.fromstring(response.content)
        assert root.tag == "data"
        assert [child.tag for child in root] == ["timestamp", "httpStatus", "errors", "path"]
        messages = [item.text or "" for item in root.findall("errors/error")]
        body: dict[str, Any] = {
            "timestamp": int(root.findtext("timestamp") or ""),
            "httpStatus": root.findtext("httpStatus"),
            "errors": messages,
            "path": root.findtext("path"),
        }
    else:
        assert media == "application/json", media
        body = response.json()
        assert list(body) == ["timestamp", "httpStatus", "errors", "path"], body
        assert type(body["timestamp"]) is int, body
    now_ms = time.time() * 1000
    assert now_ms - 60_000 < body["timestamp"] <= now_ms + 1000, body
    expected = {400: "BAD_REQUEST", 403: "FORBIDDEN", 404: "NOT_FOUND", 429: "TOO_MANY_REQUESTS"}
    assert body["httpStatus"] == expected[status], body
    assert body["path"] == response.request.url.path, body
    assert len(body["errors"]) == 1 and isinstance(body["errors"][0], str), body
    message = body["errors"][0]
    if field is not None:
        assert message.startswith(f"{field}: "), body
    return message


def counts(db: Database) -> dict[str, int]:
    """Rows of everything a test or snapshot request could create."""
    with db.session() as session:
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
            for model in (SyntheticTest, ProbeRound, Snapshot, Share, RateEvent)
        }


def http_test_body(agent_ids: list[int], **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "testName": "Home page",
        "url": "https://www.example.com/",
        "interval": 60,
        "agents": [{"agentId": str(agent_id)} for agent_id in agent_ids],
    }
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not None}


def create_test(env: Env, *, token: str | None = None, aid: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else env.auth
    response = env.api.post(
        "/v7/tests/http-server",
        headers=headers,
        params={"aid": aid} if aid else None,
        json=http_test_body([env.agent_id]),
    )
    assert response.status_code == 201, response.text
    return response.json()["testId"]


def add_rounds(db: Database, test_id: str | int, agent_id: int, round_ids: list[int]) -> None:
    rows = [
        {
            "test_id": int(test_id),
            "round_id": round_id,
            "agent_id": agent_id,
            "state": "done",
            "result": dict(RESULT),
        }
        for round_id in round_ids
    ]
    with db.session() as session:
        session.execute(insert(ProbeRound), rows)


def ago(minutes: int, interval: int = 60) -> int:
    """The id of the round that started about `minutes` ago."""
    return round_of(time.time() - minutes * 60, interval)


def window(hours: float, end: datetime | None = None) -> tuple[datetime, datetime]:
    end = end or datetime.now(UTC).replace(microsecond=0)
    return end - timedelta(hours=hours), end


def v7_body(hours: float = 1, **overrides: Any) -> dict[str, Any]:
    start, end = window(hours)
    body = {
        "displayName": "Incident",
        "startDate": start.isoformat(),
        "endDate": end.isoformat(),
        "isPublic": True,
    }
    body.update(overrides)
    return body


def v6_body(test_id: str | int, hours: float = 1, **overrides: Any) -> dict[str, Any]:
    start, end = window(hours)
    body: dict[str, Any] = {
        "testId": int(test_id),
        "displayName": "Incident",
        "from": start.strftime(V6_DATE),
        "to": end.strftime(V6_DATE),
        "isPublic": 1,
    }
    body.update(overrides)
    return body


def v7_snapshot(env: Env, test_id: str, body: dict[str, Any], **kwargs: Any) -> Response:
    headers = kwargs.pop("headers", env.auth)
    return env.api.post(f"/v7/tests/{test_id}/snapshot", headers=headers, json=body, **kwargs)


def v6_snapshot(env: Env, body: Any, path: str = "/v6/snapshot", **kwargs: Any) -> Response:
    auth = kwargs.pop("auth", env.basic)
    if isinstance(body, dict):
        return env.api.post(path, auth=auth, json=body, **kwargs)
    return env.api.post(path, auth=auth, content=body, **kwargs)


def own_groups(db: Database, org: str = "acme") -> tuple[str, AccountGroup]:
    """The organization's id and its default account group."""
    with db.session() as session:
        organization = accounts.find_org(session, org)
        group = next(g for g in accounts.account_groups(session, organization.id) if g.is_default)
        return organization.id, group


def results_pages(env: Env, test_id: str, **params: str) -> list[dict[str, Any]]:
    """Every page of a test's results, following `_links.next.href` until it disappears."""
    pages = []
    response = env.api.get(
        f"/v7/test-results/{test_id}/http-server", headers=env.auth, params=params
    )
    while True:
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/hal+json"
        page = response.json()
        pages.append(page)
        following = page["_links"].get("next")
        if following is None:
            return pages
        assert len(pages) < 20, "pagination does not end"
        assert "cursor=" in following["href"]
        response = env.api.get(following["href"], headers=env.auth)


def seen_rounds(pages: list[dict[str, Any]]) -> list[tuple[int, str]]:
    return [(r["roundId"], r["agent"]["agentId"]) for page in pages for r in page["results"]]


def share_rows(html: str) -> int:
    """Rows in the share page's table of rounds."""
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0] if "<tbody>" in html else ""
    return len(re.findall(r"<tr>", body))


# -- 1. snapshot windows --------------------------------------------------------------------------


@pytest.mark.parametrize("hours", [3, 0.5, 5, 96, 0, -1])
def test_v7_snapshot_window_must_be_one_of_the_allowed_lengths(te: Env, hours: float) -> None:
    test_id = create_test(te)
    add_rounds(te.db, test_id, te.agent_id, [ago(10)])
    before = counts(te.db)
    body = v7_invalid(v7_snapshot(te, test_id, v7_body(hours)), "startDate")
    assert "1, 2, 4, 6, 12, 24, 48" in body["detail"]
    assert counts(te.db) == before


@pytest.mark.parametrize("hours", [3, 96])
def test_v6_snapshot_window_must_be_one_of_the_allowed_lengths(te: Env, hours: float) -> None:
    test_id = create_test(te)
    before = counts(te.db)
    v6_error(v6_snapshot(te, v6_body(test_id, hours)), 400, "from")
    assert counts(te.db) == before


@pytest.mark.parametrize("hours", WINDOWS)
def test_every_allowed_v7_window_makes_a_snapshot(te: Env, hours: int) -> None:
    test_id = create_test(te)
    add_rounds(te.db, test_id, te.agent_id, [ago(10)])
    response = v7_snapshot(te, test_id, v7_body(hours))
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/hal+json"
    body = response.json()
    assert body["sourceTestId"] == test_id and body["testId"] != test_id
    assert body["endRoundId"] - body["startRoundId"] == hours * 3600
    assert counts(te.db)["snapshots"] == 1


@pytest.mark.parametrize("hours", WINDOWS)
def test_every_allowed_v6_window_makes_a_snapshot(te: Env, hours: int) -> None:
    test_id = create_test(te)
    response = v6_snapshot(te, v6_body(test_id, hours))
    assert response.status_code == 201, response.text
    link = response.json()["link"]
    assert link["sourceTestId"] == int(test_id)
    assert link["endRoundId"] - link["startRoundId"] == hours * 3600


# -- 2, 3. dates in the future, and from after to -------------------------------------------------


def test_v7_end_date_in_the_future_is_refused(te: Env) -> None:
    test_id = create_test(te)
    before = counts(te.db)
    start, end = window(1, datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1))
    body = {"displayName": "x", "startDate": start.isoformat(), "endDate": end.isoformat()}
    v7_invalid(v7_snapshot(te, test_id, body), "endDate")
    assert counts(te.db) == before


@pytest.mark.parametrize("path", ["/v6/snapshot", "/v6/snapshot.xml"])
def test_v6_to_in_the_future_is_refused(te: Env, path: str) -> None:
    test_id = create_test(te)
    before = counts(te.db)
    start, end = window(1, datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=30))
    body = v6_body(test_id, **{"from": start.strftime(V6_DATE), "to": end.strftime(V6_DATE)})
    v6_error(v6_snapshot(te, body, path), 400, "to")
    assert counts(te.db) == before


@pytest.mark.parametrize("gap_hours", [1, 0])
def test_v6_from_after_or_at_to_is_refused(te: Env, gap_hours: int) -> None:
    test_id = create_test(te)
    before = counts(te.db)
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    start = end + timedelta(hours=gap_hours)
    body = v6_body(test_id, **{"from": start.strftime(V6_DATE), "to": end.strftime(V6_DATE)})
    v6_error(v6_snapshot(te, body), 400, "from")
    v6_error(v6_snapshot(te, body, "/v6/snapshot", params={"format": "xml"}), 400, "from")
    v6_error(v6_snapshot(te, body, "/v6/snapshot", headers={"Accept": "text/xml"}), 400, "from")
    assert counts(te.db) == before


@pytest.mark.parametrize("value", ["true", 1, "yes"])
def test_v7_is_public_must_be_a_boolean(te: Env, value: Any) -> None:
    test_id = create_test(te)
    before = counts(te.db)
    v7_invalid(v7_snapshot(te, test_id, v7_body(isPublic=value)), "isPublic")
    assert counts(te.db) == before


@pytest.mark.parametrize("value", [2, "true", "yes", -1])
def test_v6_is_public_must_be_0_or_1(te: Env, value: Any) -> None:
    test_id = create_test(te)
    before = counts(te.db)
    v6_error(v6_snapshot(te, v6_body(test_id, isPublic=value)), 400, "isPublic")
    assert counts(te.db) == before


def test_a_deeply_nested_json_body_is_400_on_v6_and_v7(te: Env) -> None:
    body = '{"testId": ' + "[" * 100_000
    created = te.api.post("/v7/tests/http-server", headers=te.auth, content=body)
    assert "not valid JSON" in v7_invalid(created, "")["detail"]
    assert "not valid JSON" in v6_error(v6_snapshot(te, body), 400)


# -- 4. unknown tests and other tenants' tests ----------------------------------------------------


@pytest.fixture
def rival_test(te: Env) -> str:
    """A test of another organization, in that organization's default group."""
    rival = accounts.Accounts(te.db).create_token(
        org="rival", email="boss@rival.test", role="admin"
    )
    test_id = create_test(te, token=rival)
    add_rounds(te.db, test_id, te.agent_id, [ago(10)])
    return test_id


V7_READS = [
    ("get", "/v7/tests/http-server/{id}"),
    ("get", "/v7/test-results/{id}/http-server"),
    ("get", "/v7/test-results/{id}/http-server?window=1h"),
    ("post", "/v7/tests/{id}/snapshot"),
]


@pytest.mark.parametrize(("method", "template"), V7_READS)
@pytest.mark.parametrize("whose", ["unknown", "rival"])
def test_v7_other_tests_are_not_found(
    te: Env, rival_test: str, method: str, template: str, whose: str
) -> None:
    create_test(te)  # acme has a test of its own
    test_id = "987654" if whose == "unknown" else rival_test
    before = counts(te.db)
    url = template.format(id=test_id)
    if method == "post":
        response = te.api.post(url, headers=te.auth, json=v7_body())
    else:
        response = te.api.get(url, headers=te.auth)
    body = v7_error(response, 404)
    assert test_id in body["detail"]
    assert counts(te.db) == before


@pytest.mark.parametrize("test_id", ["abc", "2147483648", "-1", "²", "1e3"])
def test_v7_test_ids_that_are_not_ids_are_not_found(te: Env, test_id: str) -> None:
    for response in (
        te.api.get(f"/v7/tests/http-server/{test_id}", headers=te.auth),
        te.api.get(f"/v7/test-results/{test_id}/http-server", headers=te.auth),
        te.api.post(f"/v7/tests/{test_id}/snapshot", headers=te.auth, json=v7_body()),
    ):
        v7_error(response, 404)


@pytest.mark.parametrize("path", ["/v6/snapshot", "/v6/snapshot.json", "/v6/snapshot.xml"])
@pytest.mark.parametrize("whose", ["unknown", "rival"])
def test_v6_other_tests_are_not_found(te: Env, rival_test: str, path: str, whose: str) -> None:
    create_test(te)
    test_id = "987654" if whose == "unknown" else rival_test
    before = counts(te.db)
    message = v6_error(v6_snapshot(te, v6_body(test_id), path), 404)
    assert test_id in message
    assert counts(te.db) == before


@pytest.mark.parametrize("test_id", [None, "abc", -1, True, 1.5, 2**31, "²", "1e3"])
def test_v6_test_id_must_be_a_test_id(te: Env, test_id: Any) -> None:
    create_test(te)
    before = counts(te.db)
    v6_error(v6_snapshot(te, v6_body(1, testId=test_id)), 400, "testId")
    assert counts(te.db) == before


# -- 5. dates in every form clients send ----------------------------------------------------------

BAD_DATES = [
    "2024-13-01T00:00:00Z",
    "yesterday",
    "2024-01-01T25:00:00",
    "",
    "1704067200",
    1704067200,
]
OUT_OF_RANGE = pytest.param(
    "0001-01-01T00:00:00+01:00",
    id="before-year-1",
)


def test_sdk_dates_are_accepted(te: Env) -> None:
    test_id = create_test(te)
    round_id = ago(10)
    add_rounds(te.db, test_id, te.agent_id, [round_id])
    end = datetime.now(UTC)
    start = end - timedelta(hours=1)
    sdk = {"startDate": start.strftime(SDK_DATE), "endDate": end.strftime(SDK_DATE)}
    assert sdk["endDate"].endswith("+0000") and "." in sdk["endDate"]
    created = v7_snapshot(te, test_id, v7_body(**sdk))
    assert created.status_code == 201, created.text

    results = te.api.get(f"/v7/test-results/{test_id}/http-server", headers=te.auth, params=sdk)
    assert results.status_code == 200, results.text
    assert [r["roundId"] for r in results.json()["results"]] == [round_id]

    # v6 takes `yyyy-MM-dd HH:mm:ss` and the ISO form of its own example, naive meaning UTC.
    iso = v6_body(test_id, **{"from": start.strftime("%Y-%m-%dT%H:%M:%S")})
    iso["to"] = (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    assert v6_snapshot(te, iso).status_code == 201


@pytest.mark.parametrize("value", [*BAD_DATES, OUT_OF_RANGE])
@pytest.mark.parametrize("field", ["startDate", "endDate"])
def test_v7_snapshot_refuses_malformed_dates(te: Env, field: str, value: Any) -> None:
    test_id = create_test(te)
    before = counts(te.db)
    v7_invalid(v7_snapshot(te, test_id, v7_body(**{field: value})), field)
    assert counts(te.db) == before


EMPTY_QUERY_DATE = pytest.param(
    "",
    id="empty",
)


@pytest.mark.parametrize("value", [*(d for d in BAD_DATES if d != ""), EMPTY_QUERY_DATE])
@pytest.mark.parametrize("field", ["startDate", "endDate"])
def test_v7_results_refuse_malformed_dates(te: Env, field: str, value: Any) -> None:
    test_id = create_test(te)
    end = datetime.now(UTC)
    params = {"startDate": (end - timedelta(hours=1)).strftime(SDK_DATE)}
    params["endDate"] = end.strftime(SDK_DATE)
    params[field] = str(value)
    response = te.api.get(f"/v7/test-results/{test_id}/http-server", headers=te.auth, params=params)
    v7_invalid(response, field)


@pytest.mark.parametrize("value", [*BAD_DATES, OUT_OF_RANGE])
@pytest.mark.parametrize("field", ["from", "to"])
def test_v6_snapshot_refuses_malformed_dates(te: Env, field: str, value: Any) -> None:
    test_id = create_test(te)
    before = counts(te.db)
    v6_error(v6_snapshot(te, v6_body(test_id, **{field: value})), 400, field)
    assert counts(te.db) == before


@pytest.mark.parametrize("field", ["from", "to"])
def test_v6_form_body_refuses_malformed_dates(te: Env, field: str) -> None:
    test_id = create_test(te)
    body = {key: str(value) for key, value in v6_body(test_id).items()}
    body[field] = "yesterday"
    form = urlencode(body)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    response = v6_snapshot(te, form.encode(), "/v6/snapshot.xml", headers=headers)
    v6_error(response, 400, field)
    assert counts(te.db)["snapshots"] == 0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"window": "abc"}, "window"),
        ({"window": "0h"}, "window"),
        ({"window": "12"}, "window"),
        ({"window": "1h", "startDate": "2024-01-01T00:00:00Z"}, "window"),
        ({"startDate": "2024-01-02T00:00:00Z", "endDate": "2024-01-01T00:00:00Z"}, "startDate"),
        pytest.param(
            {"window": "999999w"},
            "window",
            id="window-too-long",
        ),
    ],
)
def test_v7_results_refuse_bad_windows(te: Env, params: dict[str, str], field: str) -> None:
    test_id = create_test(te)
    response = te.api.get(f"/v7/test-results/{test_id}/http-server", headers=te.auth, params=params)
    v7_invalid(response, field)


# -- 6. displayName -------------------------------------------------------------------------------

NAMES = [None, "", "   ", 42]


@pytest.mark.parametrize("name", NAMES)
def test_v7_snapshot_needs_a_display_name(te: Env, name: Any) -> None:
    test_id = create_test(te)
    add_rounds(te.db, test_id, te.agent_id, [ago(10)])
    before = counts(te.db)
    body = v7_body()
    body.pop("displayName")
    if name is not None:
        body["displayName"] = name
    v7_invalid(v7_snapshot(te, test_id, body), "displayName")
    assert counts(te.db) == before


@pytest.mark.parametrize("path", ["/v6/snapshot", "/v6/snapshot.xml"])
@pytest.mark.parametrize("name", NAMES)
def test_v6_snapshot_needs_a_display_name(te: Env, name: Any, path: str) -> None:
    test_id = create_test(te)
    before = counts(te.db)
    body = v6_body(test_id)
    body.pop("displayName")
    if name is not None:
        body["displayName"] = name
    v6_error(v6_snapshot(te, body, path), 400, "displayName")
    assert counts(te.db) == before


# -- 7. account groups (aid) ----------------------------------------------------------------------


@pytest.fixture
def foreign_aids(te: Env) -> dict[str, str]:
    """Account groups the user is not in: another of acme's, another organization's, nonsense,
    and a number too large for the database's INTEGER."""
    org_id, _ = own_groups(te.db)
    emea = accounts.Accounts(te.db).new_account_group(org_id, "EMEA", actor="test")
    accounts.Accounts(te.db).create_token(org="rival", email="boss@rival.test", role="admin")
    _, rival = own_groups(te.db, "rival")
    return {
        "other-group": str(emea.id),
        "other-org": str(rival.id),
        "nonsense": "abc",
        "too-large": "99999999999999999999",
    }


@pytest.mark.parametrize("which", ["other-group", "other-org", "nonsense", "too-large"])
def test_an_account_group_the_user_is_not_in_is_refused(
    te: Env, foreign_aids: dict[str, str], which: str
) -> None:
    aid = foreign_aids[which]
    test_id = create_test(te)
    add_rounds(te.db, test_id, te.agent_id, [ago(10)])
    before = counts(te.db)

    listed = te.api.get("/v7/tests", headers=te.auth, params={"aid": aid})
    assert aid in v7_invalid(listed, "aid")["detail"]
    v7_invalid(v7_snapshot(te, test_id, v7_body(), params={"aid": aid}), "aid")
    v6_error(v6_snapshot(te, v6_body(test_id), params={"aid": aid}), 400, "aid")
    v6_error(v6_snapshot(te, v6_body(test_id), "/v6/snapshot.xml", params={"aid": aid}), 400, "aid")
    assert counts(te.db) == before


def test_the_users_own_account_groups_work(te: Env, foreign_aids: dict[str, str]) -> None:
    _, default = own_groups(te.db)
    aid = str(default.id)
    test_id = create_test(te, aid=aid)
    add_rounds(te.db, test_id, te.agent_id, [ago(10)])

    listed = te.api.get("/v7/tests", headers=te.auth, params={"aid": aid})
    assert listed.status_code == 200, listed.text
    assert [t["testId"] for t in listed.json()["tests"]] == [test_id]
    assert v7_snapshot(te, test_id, v7_body(), params={"aid": aid}).status_code == 201
    assert v6_snapshot(te, v6_body(test_id), params={"aid": aid}).status_code == 201

    # Once the user joins another group it works there, and holds that group's tests only.
    emea = foreign_aids["other-group"]
    org_id, _ = own_groups(te.db)
    with te.db.session() as session:
        user_id = accounts.user_by_email(session, org_id, EMAIL).id
    accounts.Accounts(te.db).join_account_group(org_id, int(emea), user_id, actor="test")
    listed = te.api.get("/v7/tests", headers=te.auth, params={"aid": emea})
    assert listed.status_code == 200 and listed.json()["tests"] == []
    v7_error(v7_snapshot(te, test_id, v7_body(), params={"aid": emea}), 404)
    v6_error(v6_snapshot(te, v6_body(test_id), params={"aid": emea}), 404)


# -- 8, 9. creating tests -------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://10.1.2.3/", "http://127.0.0.2:8080/", "http://[::1]/"])
def test_a_url_the_egress_guard_refuses_is_saved_and_refused_per_round(te: Env, url: str) -> None:
    response = te.api.post(
        "/v7/tests/http-server", headers=te.auth, json=http_test_body([te.agent_id], url=url)
    )
    assert response.status_code == 201, response.text
    assert response.json()["url"] == url
    fetched = te.api.get(f"/v7/tests/http-server/{response.json()['testId']}", headers=te.auth)
    assert fetched.status_code == 200 and fetched.json()["url"] == url


@pytest.mark.parametrize("url", ["ftp://x", "not a url", "", "http://", "example.com"])
def test_a_malformed_url_is_refused(te: Env, url: str) -> None:
    before = counts(te.db)
    response = te.api.post(
        "/v7/tests/http-server", headers=te.auth, json=http_test_body([te.agent_id], url=url)
    )
    v7_invalid(response, "url")
    assert counts(te.db) == before


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"agents": None}, "agents"),
        ({"agents": []}, "agents"),
        ({"agents": [{"agentId": "987654"}]}, "agents"),
        ({"agents": [{"agentId": 1}]}, "agents"),
        ({"agents": "1"}, "agents"),
        ({"url": None}, "url"),
        ({"url": 42}, "url"),
        ({"interval": 61}, "interval"),
        ({"interval": None}, "interval"),
        ({"interval": "60"}, "interval"),
        ({"interval": True}, "interval"),
        ({"enabled": "true"}, "enabled"),
        ({"enabled": 1}, "enabled"),
        ({"httpTimeLimit": 100}, "httpTimeLimit"),
        ({"httpTimeLimit": 5.0}, "httpTimeLimit"),
        ({"desiredStatusCode": 200}, "desiredStatusCode"),
        ({"headers": {"X-A": "1"}}, "headers"),
        ({"agents": [{"agentId": "²"}]}, "agents"),
    ],
)
def test_test_create_validation(te: Env, overrides: dict[str, Any], field: str) -> None:
    before = counts(te.db)
    body = http_test_body([te.agent_id])
    for key, value in overrides.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    response = te.api.post("/v7/tests/http-server", headers=te.auth, json=body)
    v7_invalid(response, field)
    assert counts(te.db) == before
    assert te.api.get("/v7/tests", headers=te.auth).json()["tests"] == []


@pytest.mark.parametrize("raw", [b"{", b"[]", b'"x"'])
def test_test_create_body_must_be_a_json_object(te: Env, raw: bytes) -> None:
    response = te.api.post(
        "/v7/tests/http-server",
        headers={**te.auth, "Content-Type": "application/json"},
        content=raw,
    )
    v7_invalid(response, "")
    assert counts(te.db)["synthetic_tests"] == 0


# -- 10. rate limits ------------------------------------------------------------------------------


def test_the_sixth_v7_snapshot_in_five_minutes_is_429(te_any: Env) -> None:
    env = te_any
    test_id = create_test(env)
    add_rounds(env.db, test_id, env.agent_id, [ago(10)])
    for _ in range(5):
        assert v7_snapshot(env, test_id, v7_body()).status_code == 201
    before = counts(env.db)

    refused = v7_snapshot(env, test_id, v7_body())
    body = v7_error(refused, 429)
    assert "5" in body["detail"]
    headers = refused.headers
    assert headers["x-organization-rate-limit-limit"] == "5"
    assert headers["x-organization-rate-limit-remaining"] == "0"
    reset = headers["x-organization-rate-limit-reset"]
    assert reset.isdigit() and time.time() < int(reset) <= time.time() + 301
    assert headers["Retry-After"].isdigit() and 1 <= int(headers["Retry-After"]) <= 300
    assert counts(env.db) == before

    # The limit is per organization and per API: v6 and another organization still work.
    assert v6_snapshot(env, v6_body(test_id)).status_code == 201
    rival = accounts.Accounts(env.db).create_token(
        org="rival", email="boss@rival.test", role="admin"
    )
    rival_test = create_test(env, token=rival)
    rival_auth = {"Authorization": f"Bearer {rival}"}
    assert v7_snapshot(env, rival_test, v7_body(), headers=rival_auth).status_code == 201


def test_the_eleventh_v6_snapshot_in_an_hour_is_429(te_any: Env) -> None:
    env = te_any
    test_id = create_test(env)
    for _ in range(10):
        assert v6_snapshot(env, v6_body(test_id)).status_code == 201
    before = counts(env.db)

    refused = v6_snapshot(env, v6_body(test_id))
    v6_error(refused, 429)
    assert refused.headers["x-organization-rate-limit-limit"] == "10"
    assert refused.headers["x-organization-rate-limit-remaining"] == "0"
    assert int(refused.headers["x-organization-rate-limit-reset"]) > time.time()
    assert int(refused.headers["Retry-After"]) >= 1
    v6_error(v6_snapshot(env, v6_body(test_id), "/v6/snapshot.xml"), 429)
    assert counts(env.db) == before
    assert v7_snapshot(env, test_id, v7_body()).status_code == 201


# -- 11. roles and credentials --------------------------------------------------------------------


def test_a_viewer_reads_but_cannot_create(te: Env) -> None:
    test_id = create_test(te)
    add_rounds(te.db, test_id, te.agent_id, [ago(10)])
    viewer = accounts.Accounts(te.db).create_token(
        org="acme", email="viewer@acme.test", role="viewer"
    )
    headers = {"Authorization": f"Bearer {viewer}"}
    before = counts(te.db)

    listed = te.api.get("/v7/tests", headers=headers)
    assert listed.status_code == 200, listed.text
    assert [t["testId"] for t in listed.json()["tests"]] == [test_id]
    results = te.api.get(f"/v7/test-results/{test_id}/http-server", headers=headers)
    assert results.status_code == 200 and len(results.json()["results"]) == 1

    created = te.api.post(
        "/v7/tests/http-server", headers=headers, json=http_test_body([te.agent_id])
    )
    assert "viewer" in v7_error(created, 403)["detail"]
    v7_error(v7_snapshot(te, test_id, v7_body(), headers=headers), 403)
    deleted = te.api.delete(f"/v7/tests/http-server/{test_id}", headers=headers)
    v7_error(deleted, 403)
    v6_error(v6_snapshot(te, v6_body(test_id), auth=("viewer@acme.test", viewer)), 403)
    assert counts(te.db) == before


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer snap_nope"}, {"Authorization": "Basic Zm9vOmJhcg=="}],
    ids=["none", "unknown", "basic-on-v7"],
)
def test_v7_without_a_valid_token_is_401(te: Env, headers: dict[str, str]) -> None:
    test_id = create_test(te)
    before = counts(te.db)
    for response in (
        te.api.get("/v7/tests", headers=headers),
        te.api.post(f"/v7/tests/{test_id}/snapshot", headers=headers, json=v7_body()),
    ):
        assert response.status_code == 401, response.text
        assert response.headers["content-type"] == PROBLEM
        body = response.json()
        assert set(body) == {"error", "error_description"}, body
        assert body["error"] == "invalid_token" and isinstance(body["error_description"], str)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert counts(te.db) == before


# -- 12, 13. what a snapshot freezes, and deleting it ---------------------------------------------


def test_a_snapshot_keeps_exactly_its_rounds(te_any: Env) -> None:
    env = te_any
    source = create_test(env)
    now = ago(0)
    frozen = [now - 50 * 60, now - 30 * 60, now - 10 * 60]
    add_rounds(env.db, source, env.agent_id, [now - 180 * 60, *frozen])

    response = v7_snapshot(env, source, v7_body(1, displayName="Outage"))
    assert response.status_code == 201, response.text
    snapshot = response.json()
    saved = snapshot["testId"]
    assert snapshot["sourceTestId"] == source and snapshot["isPublic"] is True
    assert snapshot["test"]["savedEvent"] is True

    listed = {t["testId"]: t for t in env.api.get("/v7/tests", headers=env.auth).json()["tests"]}
    assert listed[saved]["savedEvent"] is True and listed[saved]["testName"] == "Outage"
    assert listed[source]["savedEvent"] is False

    def saved_rounds() -> list[tuple[int, str]]:
        pages = results_pages(env, saved, window="2h")
        assert len(pages) == 1 and pages[0]["test"]["testId"] == saved
        return seen_rounds(pages)

    expected = [(round_id, str(env.agent_id)) for round_id in frozen]
    assert saved_rounds() == expected

    # More rounds on the source, inside the window and after it, change nothing.
    other_agent = register_agent(env.db, "host-b")
    add_rounds(env.db, source, other_agent, [now - 40 * 60, now - 20 * 60])
    add_rounds(env.db, source, env.agent_id, [now + 60])
    assert saved_rounds() == expected

    # Nor does deleting the source.
    assert env.api.delete(f"/v7/tests/http-server/{source}", headers=env.auth).status_code == 204
    v7_error(env.api.get(f"/v7/tests/http-server/{source}", headers=env.auth), 404)
    assert saved_rounds() == expected
    fetched = env.api.get(f"/v7/tests/http-server/{saved}", headers=env.auth)
    assert fetched.status_code == 200 and fetched.json()["savedEvent"] is True
    edited = env.api.put(
        f"/v7/tests/http-server/{saved}", headers=env.auth, json={"testName": "Renamed"}
    )
    v7_invalid(edited, "testId")
    assert saved_rounds() == expected

    # The share link opens without a token, with one row per frozen round.
    page = env.api.get(snapshot["_links"]["appLink"]["href"])
    assert page.status_code == 200, page.text
    assert "<h1>Outage</h1>" in page.text
    assert share_rows(page.text) == len(frozen)


def test_a_private_snapshot_page_needs_the_organizations_token(te_any: Env) -> None:
    env = te_any
    test_id = create_test(env)
    add_rounds(env.db, test_id, env.agent_id, [ago(10)])
    response = v7_snapshot(env, test_id, v7_body(isPublic=False))
    assert response.status_code == 201, response.text
    assert response.json()["isPublic"] is False
    href = response.json()["_links"]["appLink"]["href"]

    assert env.api.get(href).status_code == 404
    assert env.api.get(href, headers={"Authorization": "Bearer snap_nope"}).status_code == 404
    rival = accounts.Accounts(env.db).create_token(
        org="rival", email="boss@rival.test", role="admin"
    )
    assert env.api.get(href, headers={"Authorization": f"Bearer {rival}"}).status_code == 404
    opened = env.api.get(href, headers=env.auth)
    assert opened.status_code == 200 and share_rows(opened.text) == 1


def test_deleting_the_snapshot_deletes_the_saved_test(te_any: Env) -> None:
    env = te_any
    source = create_test(env)
    add_rounds(env.db, source, env.agent_id, [ago(30), ago(30) + 20 * 60])
    created = v7_snapshot(env, source, v7_body())
    assert created.status_code == 201, created.text
    saved = created.json()["testId"]
    href = created.json()["_links"]["appLink"]["href"]

    listed = env.api.get("/api/v1/snapshots", headers=env.auth, params={"kind": "test_window"})
    assert listed.status_code == 200, listed.text
    items = listed.json()["items"]
    assert len(items) == 1 and items[0]["kind"] == "test_window"
    deleted = env.api.delete(f"/api/v1/snapshots/{items[0]['id']}", headers=env.auth)
    assert deleted.status_code == 204, deleted.text

    v7_error(env.api.get(f"/v7/tests/http-server/{saved}", headers=env.auth), 404)
    v7_error(env.api.get(f"/v7/test-results/{saved}/http-server", headers=env.auth), 404)
    tests = env.api.get("/v7/tests", headers=env.auth).json()["tests"]
    assert [t["testId"] for t in tests] == [source]
    assert env.api.get(href).status_code == 404
    with env.db.session() as session:
        left = session.scalars(select(ProbeRound.test_id)).all()
    assert sorted(left) == [int(source), int(source)]


# -- 14. cursor pagination ------------------------------------------------------------------------


def test_results_page_through_1200_rounds_once_each(te_any: Env) -> None:
    env = te_any
    agent_ids = [env.agent_id, register_agent(env.db, "host-b"), register_agent(env.db, "host-c")]
    source = create_test(env)
    now = ago(0)
    round_ids = [now - minutes * 60 for minutes in range(1, 401)]
    for agent_id in agent_ids:
        add_rounds(env.db, source, agent_id, round_ids)

    pages = results_pages(env, source, window="12h")
    assert [len(page["results"]) for page in pages] == [500, 500, 200]
    seen = seen_rounds(pages)
    assert len(seen) == 1200
    assert set(seen) == {(r, str(a)) for r in round_ids for a in agent_ids}
    assert all(page["startDate"] and page["endDate"] for page in pages)


def _cursor(data: Any) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "!!!",
        _cursor([1]),
        _cursor({"after": "1"}),
        _cursor({"after": 1.5}),
        _cursor({"before": 1}),
        _cursor(b"\xff\xfe"),
        _cursor(b"[" * 5000),
        _cursor({"after": True}),
        _cursor({"after": -1}),
        _cursor({"after": 10**30}),
    ],
)
def test_a_forged_cursor_is_refused(te_any: Env, cursor: str) -> None:
    env = te_any
    source = create_test(env)
    add_rounds(env.db, source, env.agent_id, [ago(10)])
    response = env.api.get(
        f"/v7/test-results/{source}/http-server",
        headers=env.auth,
        params={"window": "1h", "cursor": cursor},
    )
    v7_invalid(response, "cursor")
