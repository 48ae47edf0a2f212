"""The native API's contract without a browser: auth, validation, tenancy, pagination."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from snapshotd.services.accounts import Accounts
from snapshotd.services.outages import refused_value
from snapshotd.store.db import Database
from snapshotd.store.models import Job

PROBLEM = "application/problem+json"


def queued_jobs(db: Database) -> int:
    with db.session() as session:
        return session.query(Job).count()


def test_create_answers_202_with_location_and_job(api: TestClient, auth: dict[str, str]) -> None:
    response = api.post(
        "/api/v1/snapshots",
        headers=auth,
        json={"url": "https://example.org", "width": 1280, "height": 800},
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert response.headers["location"] == f"/api/v1/snapshots/{body['id']}"
    assert body["status"] == "queued"
    assert body["job"]["state"] == "queued" and body["job"]["href"].startswith("/api/v1/jobs/")
    assert body["expires_at"].endswith("Z")
    job = api.get(body["job"]["href"], headers=auth)
    assert job.status_code == 200 and job.json()["id"] == body["job_id"]


def test_no_token_or_a_bad_token_is_401_problem(api: TestClient) -> None:
    for headers in ({}, {"Authorization": "Bearer snap_nope"}, {"Authorization": "Basic eDp5"}):
        response = api.get("/api/v1/snapshots", headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == PROBLEM
        assert "traceback" not in response.text.lower()


BAD_URLS = [
    "file:///etc/passwd",
    "chrome://settings",
    "javascript:alert(1)",
    "data:text/html,<h1>x</h1>",
    "http://127.0.0.2/",
    "http://10.0.0.5/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.2]/",
    "http://2130706434/",
    "http://0x7f000002/",
    "not a url",
    "\u0001",  # empty once trimmed as a browser trims; once a 500
    " \t\u001f ",
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_bad_urls_are_refused_before_anything_is_queued(
    api: TestClient, auth: dict[str, str], db: Database, url: str
) -> None:
    response = api.post("/api/v1/snapshots", headers=auth, json={"url": url})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["detail"]
    assert queued_jobs(db) == 0


@pytest.mark.parametrize(
    "body",
    [
        {"url": "https://example.org", "width": 10},
        {"url": "https://example.org", "width": 100_000},
        {"url": "https://example.org", "height": 5000},
        {"url": "https://example.org", "timeout_ms": 10_000_000},
        {"url": "https://example.org", "timeout_ms": 500_000},
        {"url": "https://example.org", "colour": "red"},
        {"url": "https://example.org", "format": "gif"},
        {"url": "https://example.org", "device": "Nokia 3310"},
        {"url": "https://example.org", "quality": 50},
        {"width": 800},
        [],
    ],
)
def test_out_of_range_and_unknown_fields_are_400(
    api: TestClient, auth: dict[str, str], db: Database, body: object
) -> None:
    response = api.post("/api/v1/snapshots", headers=auth, json=body)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == PROBLEM
    assert queued_jobs(db) == 0


def test_malformed_json_and_oversized_bodies(
    api: TestClient, auth: dict[str, str], db: Database
) -> None:
    bad = api.post(
        "/api/v1/snapshots", headers={**auth, "content-type": "application/json"}, content=b"{nope"
    )
    assert bad.status_code == 400
    huge = api.post(
        "/api/v1/snapshots",
        headers={**auth, "content-type": "application/json"},
        content=b'{"url": "https://example.org", "x": "' + b"a" * 5_000_000 + b'"}',
    )
    assert huge.status_code == 413
    assert huge.headers["content-type"] == PROBLEM
    assert queued_jobs(db) == 0


def test_a_capture_url_of_only_a_control_character_is_400(
    api: TestClient, auth: dict[str, str], db: Database
) -> None:
    response = api.get("/api/v1/capture?url=%01", headers=auth)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["field"] == "url"
    assert queued_jobs(db) == 0


@pytest.mark.parametrize("aid", ["99999999999999999999", "-99999999999999999999", "2147483648"])
def test_an_account_group_id_too_large_for_the_database_is_400(
    api: TestClient, auth: dict[str, str], aid: str
) -> None:
    me = api.get("/api/v1/me", headers=auth).json()
    response = api.put(f"/api/v1/account-groups/{aid}/members/{me['user']['id']}", headers=auth)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["field"] == "aid"


def test_an_integer_sqlite_cannot_bind_is_the_requests_fault() -> None:
    """PostgreSQL refuses an out-of-range number with a DataError; SQLite's driver raises
    OverflowError before sending it. Either is a 400, not a 500."""
    assert refused_value(OverflowError("Python int too large to convert to SQLite INTEGER"))
    assert not refused_value(OverflowError("math range error"))


def test_idempotency_key_returns_the_same_snapshot(
    api: TestClient, auth: dict[str, str], db: Database
) -> None:
    headers = {**auth, "Idempotency-Key": "order-42"}
    first = api.post("/api/v1/snapshots", headers=headers, json={"url": "https://example.org"})
    again = api.post("/api/v1/snapshots", headers=headers, json={"url": "https://example.org"})
    assert first.json()["id"] == again.json()["id"]
    assert queued_jobs(db) == 1
    other = api.post("/api/v1/snapshots", headers=headers, json={"url": "https://example.com"})
    assert other.status_code == 409
    wider = api.post(
        "/api/v1/snapshots", headers=headers, json={"url": "https://example.org", "width": 900}
    )
    assert wider.status_code == 409


def test_another_organization_sees_404_never_403(
    api: TestClient, auth: dict[str, str], db: Database
) -> None:
    created = api.post(
        "/api/v1/snapshots", headers=auth, json={"url": "https://example.org"}
    ).json()
    rival = {
        "Authorization": "Bearer "
        + Accounts(db).create_token(org="rival", email="x@rival.test", role="admin")
    }
    for path in (
        f"/api/v1/snapshots/{created['id']}",
        f"/api/v1/snapshots/{created['id']}/image",
        created["job"]["href"],
    ):
        assert api.get(path, headers=rival).status_code == 404
    assert api.delete(f"/api/v1/snapshots/{created['id']}", headers=rival).status_code == 404
    assert api.get("/api/v1/snapshots", headers=rival).json()["items"] == []
    assert api.get(f"/api/v1/snapshots/{created['id']}", headers=auth).status_code == 200


def test_viewer_cannot_create_or_delete(
    api: TestClient, auth: dict[str, str], db: Database
) -> None:
    created = api.post(
        "/api/v1/snapshots", headers=auth, json={"url": "https://example.org"}
    ).json()
    viewer = {
        "Authorization": "Bearer "
        + Accounts(db).create_token(org="acme", email="v@acme.test", role="viewer")
    }
    assert (
        api.post(
            "/api/v1/snapshots", headers=viewer, json={"url": "https://example.org"}
        ).status_code
        == 403
    )
    assert api.delete(f"/api/v1/snapshots/{created['id']}", headers=viewer).status_code == 403
    assert api.get(f"/api/v1/snapshots/{created['id']}", headers=viewer).status_code == 200


def test_list_paginates_with_a_cursor_and_filters(api: TestClient, auth: dict[str, str]) -> None:
    ids = [
        api.post(
            "/api/v1/snapshots", headers=auth, json={"url": f"https://example.org/{i}"}
        ).json()["id"]
        for i in range(5)
    ]
    seen: list[str] = []
    url = "/api/v1/snapshots?limit=2"
    while url:
        page = api.get(url, headers=auth).json()
        seen += [item["id"] for item in page["items"]]
        url = page["links"]["next"]
    assert seen == list(reversed(ids))
    assert len(api.get("/api/v1/snapshots?status=queued", headers=auth).json()["items"]) == 5
    filtered = api.get("/api/v1/snapshots?status=queued&kind=page&limit=2", headers=auth).json()
    assert "status=queued" in filtered["links"]["next"] and "kind=page" in filtered["links"]["next"]
    assert api.get("/api/v1/snapshots?status=success", headers=auth).json()["items"] == []
    assert api.get("/api/v1/snapshots?status=bogus", headers=auth).status_code == 400
    assert api.get("/api/v1/snapshots?cursor=garbage", headers=auth).status_code == 400
    assert api.get("/api/v1/snapshots?limit=0", headers=auth).status_code == 400


def test_artifact_of_a_queued_snapshot_is_409(api: TestClient, auth: dict[str, str]) -> None:
    created = api.post(
        "/api/v1/snapshots", headers=auth, json={"url": "https://example.org"}
    ).json()
    response = api.get(f"/api/v1/snapshots/{created['id']}/image", headers=auth)
    assert response.status_code == 409
    unknown = api.get(f"/api/v1/snapshots/{created['id']}/thumbnail", headers=auth)
    assert unknown.status_code == 400 and unknown.headers["content-type"] == PROBLEM
    assert unknown.json()["detail"].startswith(
        "artifact: no artifact is called 'thumbnail'; the roles are image, pdf, html,"
    )


def test_delete_removes_the_snapshot_and_cancels_its_job(
    api: TestClient, auth: dict[str, str], db: Database
) -> None:
    created = api.post(
        "/api/v1/snapshots", headers=auth, json={"url": "https://example.org"}
    ).json()
    assert api.delete(f"/api/v1/snapshots/{created['id']}", headers=auth).status_code == 204
    assert api.get(f"/api/v1/snapshots/{created['id']}", headers=auth).status_code == 404
    with db.session() as session:
        job = session.get(Job, created["job_id"])
        assert job is not None and job.state == "failed"


def test_full_queue_answers_429_with_retry_after(settings, db, blobs, auth) -> None:  # type: ignore[no-untyped-def]
    from snapshotd.http.app import create_app

    small = settings.model_copy(update={"queue_max_length": 2})
    with TestClient(create_app(small, db=db, blobs=blobs)) as client:
        for _ in range(2):
            assert (
                client.post(
                    "/api/v1/snapshots", headers=auth, json={"url": "https://example.org"}
                ).status_code
                == 202
            )
        refused = client.post(
            "/api/v1/snapshots", headers=auth, json={"url": "https://example.org"}
        )
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 0


def test_health_ready_metrics_openapi(api: TestClient) -> None:
    home = api.get("/", follow_redirects=False)
    assert home.status_code == 303 and home.headers["location"] == "/console"
    assert "snapshotd token create" in api.get("/").text  # the console's sign-in page
    assert api.get("/healthz").json() == {"status": "ok"}
    assert api.get("/readyz").status_code == 200
    metrics = api.get("/metrics").text
    assert "snapshotd_queue_depth" in metrics and "snapshotd_capture_seconds" in metrics
    assert "snapshotd_database_up 1.0" in metrics
    spec = api.get("/openapi.json").json()
    assert "/api/v1/snapshots" in spec["paths"]
    assert api.get("/docs").status_code == 200


def test_unknown_route_is_a_problem_not_a_stack_trace(api: TestClient) -> None:
    response = api.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
