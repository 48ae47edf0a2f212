"""Who may do what: identical 401s, tenancy swept over every route, roles, token lifecycle and
request budgets. Run on SQLite and PostgreSQL through `any_db`."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import MetaData, select, update

from snapshotd.config import Settings
from snapshotd.errors import BadRequest
from snapshotd.http.app import create_app
from snapshotd.services import accounts
from snapshotd.services.principals import REMEMBER_SECONDS
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from snapshotd.store.models import AccountGroup, ApiToken, Snapshot, User, utcnow


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(email: str, token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{email}:{token}".encode()).decode()}


@pytest.fixture
def client(settings: Settings, any_db: Database, blobs: FileBlobStore) -> Iterator[TestClient]:
    with TestClient(create_app(settings, db=any_db, blobs=blobs)) as test_client:
        yield test_client


@pytest.fixture
def acme(any_db: Database) -> str:
    return accounts.Accounts(any_db).create_token(org="acme", email="ops@acme.test", role="admin")


@pytest.fixture
def rival(any_db: Database) -> str:
    return accounts.Accounts(any_db).create_token(
        org="rival", email="boss@rival.test", role="admin"
    )


def test_every_kind_of_bad_credential_gets_the_same_401(
    client: TestClient, any_db: Database, acme: str
) -> None:
    revoked = accounts.Accounts(any_db).create_token(
        org="acme", email="old@acme.test", role="admin"
    )
    expired = accounts.Accounts(any_db).create_token(
        org="acme", email="tmp@acme.test", role="admin", expires_in_days=1
    )
    with any_db.session() as session:
        rows = {row.user.email: row for row in session.scalars(select(ApiToken))}
        rows["old@acme.test"].revoked_at = utcnow()
        rows["tmp@acme.test"].expires_at = utcnow() - timedelta(seconds=1)
    attempts: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Token " + acme},
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
        bearer("snap_" + "x" * 43),
        bearer("y" * 5000),
        bearer(revoked),
        bearer(expired),
        basic("someone@else.test", acme),
        basic("ops@acme.test", "snap_wrong"),
    ]
    answers = set()
    for headers in attempts:
        response = client.get("/api/v1/snapshots", headers=headers)
        assert response.status_code == 401, headers
        answers.add((response.text, response.headers["www-authenticate"]))
    assert len(answers) == 1
    assert client.get("/api/v1/snapshots", headers=bearer(acme)).status_code == 200


def test_basic_email_token_and_bearer_resolve_to_one_principal(
    client: TestClient, acme: str
) -> None:
    by_bearer = client.get("/api/v1/me", headers=bearer(acme)).json()
    by_basic = client.get("/api/v1/me", headers=basic("OPS@acme.test", acme)).json()
    assert by_bearer == by_basic
    assert by_bearer["user"]["role"] == "admin"
    assert by_bearer["account_groups"][0]["default"] is True


# -- tenancy, swept over the OpenAPI schema ---------------------------------------------------

BODIES = {
    "archive": {"reason": "sweep"},
    "hold": {"reason": "sweep"},
    "shares": {},
    "users/{user_id}": {"role": "viewer"},
}


def _objects(client: TestClient, any_db: Database, token: str) -> dict[str, str]:
    """One of each kind of object owned by the token's organization, by path parameter name."""
    created = client.post(
        "/api/v1/snapshots", headers=bearer(token), json={"url": "https://example.org"}
    ).json()
    share = client.post(f"/api/v1/snapshots/{created['id']}/shares", headers=bearer(token)).json()
    user = client.post(
        "/api/v1/users", headers=bearer(token), json={"email": "new@acme.test", "role": "viewer"}
    ).json()
    other = client.post(
        "/api/v1/tokens", headers=bearer(token), json={"email": "new@acme.test"}
    ).json()
    group = client.post(
        "/api/v1/account-groups", headers=bearer(token), json={"name": "Ops"}
    ).json()
    render_key = client.post("/api/v1/render-keys", headers=bearer(token), json={}).json()
    return {
        "key_id": render_key["id"],
        "snapshot_id": created["id"],
        "job_id": created["job_id"],
        "share_id": share["id"],
        "user_id": user["id"],
        "token_id": other["id"],
        "aid": group["aid"],
        "artifact": "image",
    }


def _routes(client: TestClient, *, named_only: bool) -> Iterator[tuple[str, str]]:
    """(method, path template) for every /api/v1 route (only those that name an object)."""
    spec = client.get("/openapi.json").json()
    for path, operations in spec["paths"].items():
        if path.startswith("/api/v1") and ("{" in path or not named_only):
            for method in operations:
                yield method.upper(), path


def _call(
    client: TestClient, method: str, template: str, ids: dict[str, str], headers: dict[str, str]
) -> Any:
    path = re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], template)
    body = next((b for key, b in BODIES.items() if template.endswith(key)), None)
    if template == "/api/v1/snapshots" and method == "POST":
        body = {"url": "https://example.org"}
    return client.request(method, path, headers=headers, json=body)


def test_another_organization_gets_404_on_every_route(
    client: TestClient, any_db: Database, acme: str, rival: str
) -> None:
    ids = _objects(client, any_db, acme)
    swept = 0
    for method, template in _routes(client, named_only=True):
        response = _call(client, method, template, ids, bearer(rival))
        assert response.status_code == 404, (method, template, response.text)
        swept += 1
    assert swept >= 12
    # Nothing of acme's shows up in rival's listings either.
    for listing in ("/api/v1/snapshots", "/api/v1/users", "/api/v1/tokens", "/api/v1/audit"):
        items = client.get(listing, headers=bearer(rival)).json()["items"]
        assert all("acme" not in str(item) for item in items), listing
        assert all(ids["snapshot_id"] not in str(item) for item in items), listing
    # And everything still works for its owner.
    snapshot = client.get(f"/api/v1/snapshots/{ids['snapshot_id']}", headers=bearer(acme))
    assert snapshot.status_code == 200


def test_a_viewer_is_refused_every_write_with_403(
    client: TestClient, any_db: Database, acme: str
) -> None:
    ids = _objects(client, any_db, acme)
    viewer = accounts.Accounts(any_db).create_token(
        org="acme", email="look@acme.test", role="viewer"
    )
    writes = 0
    for method, template in _routes(client, named_only=False):
        if method != "GET":
            response = _call(client, method, template, ids, bearer(viewer))
            assert response.status_code == 403, (method, template, response.text)
            writes += 1
    assert writes >= 10
    assert client.get(f"/api/v1/snapshots/{ids['snapshot_id']}", headers=bearer(viewer)).is_success


def test_roles_map_onto_the_permission_words() -> None:
    def who(role: str) -> accounts.Principal:
        return accounts.Principal("org", "usr", "a@b.c", role, "tok")

    assert who("viewer").can("view") and not who("viewer").can("upload")
    assert who("uploader").can("upload") and who("uploader").can("share")
    assert not who("uploader").can("manage") and who("manager").can("manage")
    assert not who("manager").can("admin") and who("admin").can("admin")


# -- tokens ---------------------------------------------------------------------------------


def test_token_lifecycle_through_the_api(
    settings: Settings, client: TestClient, any_db: Database, blobs: FileBlobStore, acme: str
) -> None:
    client.post("/api/v1/users", headers=bearer(acme), json={"email": "ci@acme.test"})
    made = client.post(
        "/api/v1/tokens",
        headers=bearer(acme),
        json={"email": "ci@acme.test", "name": "ci", "expires_in_days": 30},
    )
    assert made.status_code == 201 and made.headers["cache-control"] == "no-store"
    secret = made.json()["token"]
    assert secret.startswith("snap_") and len(secret) >= 48
    assert client.get("/api/v1/me", headers=bearer(secret)).json()["user"]["role"] == "viewer"
    listed = client.get("/api/v1/tokens", headers=bearer(acme)).json()["items"]
    mine = next(item for item in listed if item["id"] == made.json()["id"])
    assert "token" not in mine and secret not in str(listed)
    assert mine["state"] == "active" and mine["last_used_at"] and mine["expires_at"]
    # The revoking process refuses the token at once; a second API process on the same database
    # remembers it for at most REMEMBER_SECONDS.
    with TestClient(create_app(settings, db=any_db, blobs=blobs)) as second:
        assert second.get("/api/v1/me", headers=bearer(secret)).status_code == 200
        gone = client.delete(f"/api/v1/tokens/{made.json()['id']}", headers=bearer(acme))
        assert gone.status_code == 204
        assert client.get("/api/v1/me", headers=bearer(secret)).status_code == 401
        deadline = time.monotonic() + REMEMBER_SECONDS + 1
        while second.get("/api/v1/me", headers=bearer(secret)).status_code != 401:
            assert time.monotonic() < deadline, "the revoked token still works"
            time.sleep(0.1)
    listed = client.get("/api/v1/tokens", headers=bearer(acme)).json()["items"]
    assert next(i for i in listed if i["id"] == made.json()["id"])["state"] == "revoked"
    unknown_user = client.post("/api/v1/tokens", headers=bearer(acme), json={"email": "x@y.z"})
    assert unknown_user.status_code == 400 and unknown_user.json()["field"] == "email"


def test_raw_tokens_never_reach_the_database(client: TestClient, any_db: Database) -> None:
    token = accounts.Accounts(any_db).create_token(org="acme", email="ops@acme.test", role="admin")
    made = client.post(
        "/api/v1/tokens", headers=bearer(token), json={"email": "ops@acme.test"}
    ).json()["token"]
    client.post("/api/v1/snapshots", headers=bearer(made), json={"url": "https://example.org"})
    client.get("/api/v1/me", headers=basic("ops@acme.test", made))
    metadata = MetaData()
    metadata.reflect(any_db.engine)
    dump = []
    with any_db.engine.connect() as connection:
        for table in metadata.sorted_tables:
            dump += [str(tuple(row)) for row in connection.execute(table.select())]
    text = "\n".join(dump)
    assert accounts.token_digest(token) in text and accounts.token_digest(made) in text
    for secret in (token, made, token[5:], made[5:]):
        assert secret not in text


# -- account groups ---------------------------------------------------------------------------


def test_aid_selects_a_group_the_user_belongs_to(any_db: Database, acme: str) -> None:
    with any_db.session() as session:
        principal = accounts.authenticate(session, acme)
    default = accounts.Accounts(any_db).account_group_for(principal, None)
    assert default.is_default and default.name == "Default"
    ops = accounts.Accounts(any_db).new_account_group(principal.org_id, "Ops", actor="t")
    with pytest.raises(BadRequest) as refused:
        accounts.Accounts(any_db).account_group_for(principal, str(ops.id))
    assert refused.value.field == "aid"
    accounts.Accounts(any_db).join_account_group(
        principal.org_id, ops.id, principal.user_id, actor="t"
    )
    assert accounts.Accounts(any_db).account_group_for(principal, str(ops.id)).name == "Ops"
    rival = accounts.Accounts(any_db).create_token(org="rival", email="r@rival.test", role="admin")
    with any_db.session() as session:
        theirs = accounts.authenticate(session, rival)
        rival_group = session.scalar(
            select(AccountGroup).where(AccountGroup.org_id == theirs.org_id)
        )
        assert rival_group is not None
    for aid in (str(rival_group.id), "999999", "not-a-number"):
        with pytest.raises(BadRequest):
            accounts.Accounts(any_db).account_group_for(principal, aid)


# -- request budgets --------------------------------------------------------------------------


def test_a_token_over_its_request_budget_gets_429(
    settings: Settings, any_db: Database, blobs: FileBlobStore, acme: str, rival: str
) -> None:
    tight = settings.model_copy(update={"token_requests_per_minute": 5})
    with TestClient(create_app(tight, db=any_db, blobs=blobs)) as client:
        codes = [client.get("/api/v1/me", headers=bearer(acme)).status_code for _ in range(6)]
        assert codes == [200] * 5 + [429]
        refused = client.get("/api/v1/me", headers=bearer(acme))
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["ratelimit-policy"] == '"requests";q=5;w=60'
        assert refused.headers["ratelimit"].startswith('"requests";r=0;t=')
        assert client.get("/api/v1/me", headers=bearer(rival)).status_code == 200


def test_repeated_failed_sign_ins_are_slowed_down(
    settings: Settings, any_db: Database, blobs: FileBlobStore, acme: str
) -> None:
    tight = settings.model_copy(update={"share_misses_per_minute": 5})
    with TestClient(create_app(tight, db=any_db, blobs=blobs)) as client:
        codes = [
            client.get("/api/v1/me", headers=bearer(f"snap_guess{i}")).status_code for i in range(8)
        ]
        assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}


def test_user_roles_are_managed_by_admins_only(
    client: TestClient, any_db: Database, acme: str
) -> None:
    made = client.post(
        "/api/v1/users", headers=bearer(acme), json={"email": "m@acme.test", "role": "manager"}
    )
    assert made.status_code == 201
    again = client.post("/api/v1/users", headers=bearer(acme), json={"email": "M@acme.test"})
    assert again.status_code == 409
    bad = client.post(
        "/api/v1/users", headers=bearer(acme), json={"email": "z@acme.test", "role": "owner"}
    )
    assert bad.status_code == 400
    user_id = made.json()["id"]
    raised = client.patch(f"/api/v1/users/{user_id}", headers=bearer(acme), json={"role": "admin"})
    assert raised.json()["role"] == "admin"
    with any_db.session() as session:
        me = session.scalar(select(User).where(User.email == "ops@acme.test"))
        assert me is not None
        my_id = me.id
    demote_self = client.patch(
        f"/api/v1/users/{my_id}", headers=bearer(acme), json={"role": "viewer"}
    )
    assert demote_self.status_code == 400


def test_retention_per_organization_and_kind(
    client: TestClient, any_db: Database, acme: str
) -> None:
    changed = client.patch(
        "/api/v1/org", headers=bearer(acme), json={"retention_days": {"page": 2}}
    )
    assert changed.status_code == 200 and changed.json()["retention_days"] == {"page": 2}
    assert (
        client.patch(
            "/api/v1/org", headers=bearer(acme), json={"retention_days": {"movie": 2}}
        ).status_code
        == 400
    )
    made = client.post(
        "/api/v1/snapshots", headers=bearer(acme), json={"url": "https://example.org"}
    ).json()
    with any_db.session() as session:
        snapshot = session.get(Snapshot, made["id"])
        assert snapshot is not None and snapshot.expires_at is not None
        days = (snapshot.expires_at - snapshot.created_at).total_seconds() / 86400
    assert days == pytest.approx(2, abs=0.01)
    with any_db.session() as session:
        session.execute(update(Snapshot).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert client.get(f"/api/v1/snapshots/{made['id']}", headers=bearer(acme)).status_code == 404


# -- values the database cannot hold ----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/snapshots/snp_%00x", None),
        ("GET", "/api/v1/snapshots?status=su%00ccess", None),
        ("POST", "/api/v1/snapshots", {"url": "https://example.org/a\u0000b"}),
        ("GET", "/s/abc%00def", None),
        ("GET", "/v1.1/locations/loc%00x", None),
    ],
)
def test_a_nul_character_is_a_bad_request_on_both_databases(
    settings: Settings,
    any_db: Database,
    blobs: FileBlobStore,
    acme: str,
    method: str,
    path: str,
    body: dict[str, str] | None,
) -> None:
    """PostgreSQL refuses NUL in text; that is the request's fault (4xx), never a 500."""
    with TestClient(create_app(settings, db=any_db, blobs=blobs)) as client:
        answer = client.request(method, path, headers=bearer(acme), json=body)
    assert 400 <= answer.status_code < 500, answer.text
