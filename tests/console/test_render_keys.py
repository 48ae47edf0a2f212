"""The console's render keys page through the ASGI app: admins list, create and revoke keys, the
secret is shown once with a link that verifies, and every other role is refused."""

from __future__ import annotations

import html
import re
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from snapshotd.config import Settings
from snapshotd.services.accounts import Accounts
from snapshotd.services.render_keys import RenderKeys, split_signed
from snapshotd.store.db import Database
from snapshotd.store.models import AuditEvent, RenderKey
from tests.console.conftest import ADMIN, org_id_of, sign_in

PAGE = "/console/render-keys"
NAV = 'href="/console/render-keys"'
SECRET = re.compile(r'id="new-secret" type="text" readonly value="(rks_[\w-]+)"')
TAG = re.compile(r'<textarea id="example-tag"[^>]*>([^<]+)</textarea>')
KEY_ID = re.compile(r'id="new-key-id" type="text" readonly value="(rk_\w+)"')


@pytest.fixture
def signed_in(client: TestClient, admin_token: str) -> str:
    return sign_in(client, admin_token)


def keys_in(db: Database) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(RenderKey)) or 0


def test_an_admin_creates_a_key_sees_its_secret_once_and_revokes_it(
    client: TestClient, db: Database, settings: Settings, signed_in: str
) -> None:
    empty = client.get(PAGE)
    assert empty.status_code == 200 and "No render keys yet" in empty.text
    assert f'{NAV} aria-current="page"' in empty.text

    created = client.post(PAGE, data={"csrf": signed_in, "name": "blog", "rate_limit": "10/60"})
    assert created.status_code == 200, created.text
    assert created.headers["cache-control"] == "no-store"
    assert "it is not shown again" in created.text
    secret_found, id_found = SECRET.search(created.text), KEY_ID.search(created.text)
    assert secret_found and id_found
    secret, key_id = secret_found.group(1), id_found.group(1)

    # The example is a working link for this key: the server's own check accepts its signature.
    tag_found = TAG.search(created.text)
    assert tag_found
    tag = html.unescape(tag_found.group(1))
    src = re.search(r'<img src="([^"]+)" alt="[^"]+" width="1200" height="630">', tag)
    assert src, tag
    link = urlsplit(src.group(1))
    assert f"{link.scheme}://{link.netloc}{link.path}" == f"http://testserver/render/{key_id}/png"
    signed, given = split_signed(link.query.encode())
    keys = RenderKeys(settings, db)
    assert keys.check(keys.look_up(key_id), signed, given).id == key_id
    assert signed == b"url=https%3A%2F%2Fexample.org%2F&width=1200&height=630"

    client.post(PAGE, data={"csrf": signed_in})  # a second key, with the default rate limit
    listed = client.get(PAGE)
    assert secret not in listed.text and "rks_" not in listed.text
    rows = re.findall(r'<tr class="state-(\w+)">(.*?)</tr>', listed.text, re.S)
    assert [state for state, _ in rows] == ["live", "live"]
    assert "blog" in rows[0][1] and key_id in rows[0][1] and "10 per 60 s" in rows[0][1]
    assert "never" not in rows[0][1]  # the signature check above used it
    assert "never" in rows[1][1] and "600 per 60 s (default)" in rows[1][1]

    revoked = client.post(f"{PAGE}/{key_id}/revoke", data={"csrf": signed_in})
    assert revoked.status_code == 200 and "The render key is revoked" in revoked.text
    states = re.findall(r'<tr class="state-(\w+)">', revoked.text)
    assert states == ["revoked", "live"]
    assert keys.look_up(key_id) is None
    with db.session() as session:
        events = session.execute(
            select(AuditEvent.action, AuditEvent.actor).where(AuditEvent.target_id == key_id)
        ).all()
    assert sorted(events) == [("created", ADMIN), ("revoked", ADMIN)]


def test_a_refused_rate_limit_is_shown_next_to_the_form_as_typed(
    client: TestClient, db: Database, signed_in: str
) -> None:
    answer = client.post(PAGE, data={"csrf": signed_in, "name": "shop", "rate_limit": "lots"})
    assert answer.status_code == 400
    assert 'role="alert" id="form-error"' in answer.text and "COUNT/SECONDS" in answer.text
    assert re.search(r'id="rate_limit"[^>]*value="lots"[^>]*aria-invalid="true"', answer.text)
    assert 'value="shop"' in answer.text and "rks_" not in answer.text
    assert keys_in(db) == 0


def test_revoking_needs_the_form_token_and_a_key_of_the_organization(
    client: TestClient, db: Database, settings: Settings, signed_in: str
) -> None:
    client.post(PAGE, data={"csrf": signed_in, "name": "blog"})
    with db.session() as session:
        key_id = session.scalars(select(RenderKey.id)).one()
    forged = client.post(f"{PAGE}/{key_id}/revoke", data={"csrf": "forged"})
    assert forged.status_code == 403 and forged.headers["content-type"].startswith("text/html")
    assert "state-live" in client.get(PAGE).text

    Accounts(db).create_token(org="globex", email="ops@globex.test", role="admin")
    keys = RenderKeys(settings, db)
    theirs = keys.create(org_id_of(db, "globex"), name="globex site", actor="ops@globex.test")
    assert theirs.row.id not in client.get(PAGE).text
    refused = client.post(f"{PAGE}/{theirs.row.id}/revoke", data={"csrf": signed_in})
    assert refused.status_code == 404 and "no render key" in refused.text
    assert keys.look_up(theirs.row.id) is not None


@pytest.mark.parametrize("role", ["viewer", "uploader", "manager"])
def test_other_roles_see_no_entry_and_are_refused(
    client: TestClient, db: Database, role: str
) -> None:
    token = Accounts(db).create_token(org="acme", email=f"{role}@acme.test", role=role)
    csrf = sign_in(client, token)
    assert NAV not in client.get("/console").text
    page = client.get(PAGE)
    assert page.status_code == 403 and page.headers["content-type"].startswith("text/html")
    assert "admin" in page.text
    made = client.post(PAGE, data={"csrf": csrf, "name": "sneaky"})
    assert made.status_code == 403 and keys_in(db) == 0


def test_the_page_holds_no_inline_script_or_style(client: TestClient, signed_in: str) -> None:
    page = client.post(PAGE, data={"csrf": signed_in, "name": "blog"}).text
    assert "<style" not in page and " style=" not in page
    assert re.findall(r"<script[^>]*>", page) == ['<script src="/console/static/console.js" defer>']
    assert not re.search(r"\son[a-z]+=", page)
