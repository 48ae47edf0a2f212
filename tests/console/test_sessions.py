"""Console sign-in, sessions and CSRF, through the ASGI app (no browser needed)."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from snapshotd.config import Settings
from snapshotd.http.app import create_app
from snapshotd.services.accounts import Accounts
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from snapshotd.store.models import ConsoleSession, Snapshot, utcnow
from tests.console.conftest import ADMIN, add_snapshot, csrf_of, org_id_of, sign_in


def _signed_out(client: TestClient, path: str = "/console") -> bool:
    answer = client.get(path, follow_redirects=False)
    return answer.status_code == 303 and answer.headers["location"].startswith("/console/sign-in")


def test_pages_redirect_to_sign_in_and_back(client: TestClient, admin_token: str) -> None:
    answer = client.get("/console/new?x=1", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/sign-in?next=/console/new%3Fx%3D1"
    form = client.get(answer.headers["location"])
    assert 'name="next" value="/console/new?x=1"' in form.text
    landed = client.post(
        "/console/sign-in",
        data={"token": admin_token, "csrf": csrf_of(form.text), "next": "/console/new?x=1"},
        follow_redirects=False,
    )
    assert landed.status_code == 303 and landed.headers["location"] == "/console/new?x=1"


def test_session_cookie_is_http_only_lax_on_console_path_and_stored_hashed(
    client: TestClient, db: Database, admin_token: str
) -> None:
    form = client.get("/console/sign-in")
    answer = client.post(
        "/console/sign-in",
        data={"token": admin_token, "csrf": csrf_of(form.text)},
        follow_redirects=False,
    )
    cookie = next(
        value
        for key, value in answer.headers.multi_items()
        if key == "set-cookie" and value.startswith("snapshotd_console=")
    )
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http here; https requests get Secure
    secret = cookie.split(";")[0].split("=", 1)[1]
    with db.session() as session:
        ids = list(session.scalars(select(ConsoleSession.id)))
        row = session.get(ConsoleSession, ids[0])
        assert row is not None
        life = row.expires_at - row.created_at
    assert ids == [hashlib.sha256(secret.encode()).hexdigest()]
    assert life == timedelta(hours=12)
    assert "Max-Age=43200" in cookie


def test_the_session_life_is_a_setting(
    settings: Settings, db: Database, blobs: FileBlobStore, admin_token: str
) -> None:
    short = settings.model_copy(update={"console_session_hours": 2})
    with TestClient(create_app(short, db=db, blobs=blobs)) as client:
        form = client.get("/console/sign-in")
        answer = client.post(
            "/console/sign-in",
            data={"token": admin_token, "csrf": csrf_of(form.text)},
            follow_redirects=False,
        )
    assert "Max-Age=7200" in answer.headers["set-cookie"]
    with db.session() as session:
        row = session.scalars(select(ConsoleSession)).one()
        assert row.expires_at - row.created_at == timedelta(hours=2)


def test_https_sign_in_sets_a_secure_cookie(
    db: Database, admin_token: str, client: TestClient
) -> None:
    secure = TestClient(client.app, base_url="https://console.test")
    form = secure.get("/console/sign-in")
    answer = secure.post(
        "/console/sign-in",
        data={"token": admin_token, "csrf": csrf_of(form.text)},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert "Secure" in answer.headers["set-cookie"]


def test_email_must_own_the_token_and_failures_show_inline(
    client: TestClient, admin_token: str
) -> None:
    for token, email in (("snap_wrong", ""), (admin_token, "someone@else.test")):
        form = client.get("/console/sign-in")
        answer = client.post(
            "/console/sign-in",
            data={"token": token, "email": email, "csrf": csrf_of(form.text)},
            follow_redirects=False,
        )
        assert answer.status_code == 401
        assert "was not accepted" in answer.text and 'aria-invalid="true"' in answer.text
    assert _signed_out(client)
    sign_in(client, admin_token, ADMIN.upper())
    assert not _signed_out(client)


def test_sign_in_form_needs_its_own_token(client: TestClient, admin_token: str) -> None:
    client.get("/console/sign-in")
    forged = client.post(
        "/console/sign-in", data={"token": admin_token, "csrf": "guess"}, follow_redirects=False
    )
    assert forged.status_code == 403
    assert _signed_out(client)


def test_posts_without_a_valid_csrf_token_or_from_another_site_change_nothing(
    client: TestClient, db: Database, blobs: FileBlobStore, admin_token: str
) -> None:
    csrf = sign_in(client, admin_token)
    snapshot_id = add_snapshot(db, blobs, org_id_of(db))
    archive = f"/console/snapshots/{snapshot_id}/archive"
    assert client.post(archive, data={}).status_code == 403
    assert client.post(archive, data={"csrf": "0" * 64}).status_code == 403
    cross = client.post(archive, data={"csrf": csrf}, headers={"Origin": "https://evil.test"})
    assert cross.status_code == 403
    referred = client.post(
        archive, data={"csrf": csrf}, headers={"Referer": "https://evil.test/page"}
    )
    assert referred.status_code == 403
    assert "security token" in client.post(archive, data={}).text
    with db.session() as session:
        snapshot = session.get(Snapshot, snapshot_id)
        assert snapshot is not None and snapshot.archived_at is None
    same_site = client.post(
        archive,
        data={"csrf": csrf},
        headers={"Origin": "http://testserver"},
        follow_redirects=False,
    )
    assert same_site.status_code == 303
    with db.session() as session:
        snapshot = session.get(Snapshot, snapshot_id)
        assert snapshot is not None and snapshot.archived_at is not None


def test_sign_out_ends_the_session_everywhere(
    client: TestClient, db: Database, admin_token: str
) -> None:
    csrf = sign_in(client, admin_token)
    stolen = dict(client.cookies)
    out = client.post("/console/sign-out", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303 and "signed_out" in out.headers["location"]
    assert _signed_out(client)
    replay = TestClient(client.app, base_url="http://testserver", cookies=stolen)
    assert _signed_out(replay)
    with db.session() as session:
        assert session.scalar(select(ConsoleSession.id)) is None


def test_revoking_the_token_ends_its_session(
    client: TestClient, db: Database, admin_token: str
) -> None:
    sign_in(client, admin_token)
    org_id = org_id_of(db)
    token_id = Accounts(db).list_tokens(org_id)[0].id
    Accounts(db).revoke_token(org_id, token_id, actor="test")
    assert _signed_out(client)
    assert _signed_out(client, "/console/sign-in") is False  # the sign-in page shows again


def test_an_expired_session_redirects_to_sign_in(
    client: TestClient, db: Database, admin_token: str
) -> None:
    sign_in(client, admin_token)
    with db.session() as session:
        session.execute(update(ConsoleSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert _signed_out(client)
    # A new sign-in sweeps the expired row away.
    sign_in(client, admin_token)
    with db.session() as session:
        assert len(list(session.scalars(select(ConsoleSession.id)))) == 1


def test_viewer_sees_no_write_forms_and_forged_writes_are_refused(
    client: TestClient, db: Database, blobs: FileBlobStore, viewer_token: str
) -> None:
    snapshot_id = add_snapshot(db, blobs, org_id_of(db))
    csrf = sign_in(client, viewer_token)
    grid = client.get("/console").text
    page = client.get(f"/console/snapshots/{snapshot_id}").text
    assert "New capture" not in grid and 'href="/console/new"' not in grid
    assert page.count('method="post"') == 1  # sign out only
    for action in ("Archive", "Create share link", "Place legal hold", "Delete"):
        assert action not in page
    for path in ("archive", "unarchive", "hold", "release", "delete", "shares", "shares/x/revoke"):
        refused = client.post(f"/console/snapshots/{snapshot_id}/{path}", data={"csrf": csrf})
        assert refused.status_code == 403, path
        assert "viewer" in refused.text
    assert client.get("/console/new").status_code == 403
    capture = client.post("/console/new", data={"csrf": csrf, "url": "http://127.0.0.1/"})
    assert capture.status_code == 403
    with db.session() as session:
        snapshot = session.get(Snapshot, snapshot_id)
        assert snapshot is not None and snapshot.archived_at is None and not snapshot.legal_hold
        assert len(list(session.scalars(select(Snapshot.id)))) == 1


def test_each_form_asks_for_its_own_role(
    client: TestClient, db: Database, blobs: FileBlobStore, viewer_token: str
) -> None:
    """A manager archives but may not hold; the delete page itself needs the manager role."""
    snapshot_id = add_snapshot(db, blobs, org_id_of(db))
    base = f"/console/snapshots/{snapshot_id}"
    csrf = sign_in(client, viewer_token)
    confirm = client.get(f"{base}/delete")
    assert confirm.status_code == 403 and "manager" in confirm.text
    assert confirm.headers["content-type"].startswith("text/html")
    client.post("/console/sign-out", data={"csrf": csrf})
    manager = Accounts(db).create_token(org="acme", email="lead@acme.test", role="manager")
    csrf = sign_in(client, manager)
    assert client.get(f"{base}/delete").status_code == 200
    archived = client.post(f"{base}/archive", data={"csrf": csrf}, follow_redirects=False)
    assert archived.status_code == 303 and archived.headers["location"].endswith("done=archived")
    held = client.post(f"{base}/hold", data={"csrf": csrf, "reason": "audit"})
    assert held.status_code == 403 and "admin" in held.text
    with db.session() as session:
        snapshot = session.get(Snapshot, snapshot_id)
        assert snapshot is not None and snapshot.archived_at is not None
        assert not snapshot.legal_hold


def test_next_cannot_leave_the_console(client: TestClient, admin_token: str) -> None:
    for target in (
        "https://evil.test/",
        "//evil.test/",
        "/api/v1/snapshots",
        "/console\\@x",
        "/consolex",
        "/console/../api/v1/snapshots",
        "/console/%2E%2e/api/v1/snapshots",
        "/console/./../x",
        "/console/\t/../x",
        "http://testserver/console",
    ):
        form = client.get("/console/sign-in", params={"next": target})
        landed = client.post(
            "/console/sign-in",
            data={"token": admin_token, "csrf": csrf_of(form.text), "next": target},
            follow_redirects=False,
        )
        assert landed.headers["location"] == "/console", target
        client.cookies.clear()


def test_session_store_on_both_databases(any_db: Database, blobs: FileBlobStore) -> None:
    from snapshotd.services.accounts import Accounts
    from snapshotd.services.browse import Browse, Filters
    from snapshotd.services.console_sessions import ConsoleSessions

    token = Accounts(any_db).create_token(org="acme", email=ADMIN, role="manager")
    principal = Accounts(any_db).sign_in(token)
    sessions = ConsoleSessions(any_db)
    secret = sessions.open_session(principal, timedelta(hours=1))
    assert sessions.principal_for(secret) == principal
    assert sessions.principal_for(secret + "x") is None
    sessions.close_session(secret)
    assert sessions.principal_for(secret) is None

    org = principal.org_id
    wanted = add_snapshot(any_db, blobs, org, url="https://a.example/Report_100%")
    add_snapshot(any_db, blobs, org, url="https://a.example/Report-1000")
    found = Browse(any_db).search(org, Filters(search="report_100%"))
    assert [item.id for item in found.items] == [wanted]


def test_a_nul_character_is_a_bad_request_on_both_databases(
    any_db: Database, blobs: FileBlobStore, settings: Settings
) -> None:
    """PostgreSQL refuses NUL in text: the console answers its own 400 page, never a 500."""
    from snapshotd.services.accounts import Accounts

    token = Accounts(any_db).create_token(org="acme", email=ADMIN, role="manager")
    with TestClient(create_app(settings, db=any_db, blobs=blobs)) as client:
        sign_in(client, token)
        for path in ("/console?q=a%00b", "/console/snapshots/snp_%00", "/console/locations/l%00"):
            answer = client.get(path)
            assert answer.status_code < 500, (path, answer.status_code)
            assert "text/html" in answer.headers["content-type"]


def test_over_https_the_cookies_are_host_only_and_a_plain_named_one_is_not_read(
    settings: Settings, db: Database, blobs: FileBlobStore, admin_token: str
) -> None:
    def set_cookie(answer: httpx.Response, name: str) -> str:
        headers = answer.headers.multi_items()
        return next(v for k, v in headers if k == "set-cookie" and v.startswith(f"{name}="))

    app = create_app(settings, db=db, blobs=blobs)
    with TestClient(app, base_url="https://testserver") as client:
        form = client.get("/console/sign-in")
        nonce = set_cookie(form, "__Host-snapshotd_console_form")
        assert "Secure" in nonce and "Path=/;" in nonce and "Domain" not in nonce
        answer = client.post(
            "/console/sign-in",
            data={"token": admin_token, "csrf": csrf_of(form.text)},
            follow_redirects=False,
        )
        assert answer.status_code == 303
        cookie = set_cookie(answer, "__Host-snapshotd_console")
        assert "Secure" in cookie and "Path=/;" in cookie and "Domain" not in cookie
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie
        secret = cookie.split(";")[0].split("=", 1)[1]
        assert client.get("/console", follow_redirects=False).status_code == 200

    # Under the plain name, as another host of the same domain could set it, it is not read.
    with TestClient(app, base_url="https://testserver", cookies={"snapshotd_console": secret}) as c:
        assert _signed_out(c)
    with TestClient(app, base_url="http://testserver", cookies={"snapshotd_console": secret}) as c:
        assert not _signed_out(c)  # plain http keeps the plain name
