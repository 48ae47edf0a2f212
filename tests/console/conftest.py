"""Console fixtures: an app without a worker for page tests, and helpers that sign in with a
TestClient the way a browser does (reading the form's hidden token) and make snapshots directly."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from playwright.sync_api import Page

from snapshotd.config import Settings
from snapshotd.http.app import create_app
from snapshotd.services.accounts import Accounts
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from snapshotd.store.models import Artifact, Organization, Snapshot, utcnow

ADMIN = "ops@acme.test"
VIEWER = "viewer@acme.test"
_HIDDEN = re.compile(r'name="csrf" value="([^"]+)"')


def png(size: tuple[int, int] = (800, 600), colour: tuple[int, int, int] = (30, 90, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


def csrf_of(html: str) -> str:
    found = _HIDDEN.search(html)
    assert found, "the page has no form token"
    return found.group(1)


def sign_in(client: TestClient, token: str, email: str = "") -> str:
    """Signs in through the form; returns the session's form token."""
    form = client.get("/console/sign-in")
    assert form.status_code == 200, form.text
    answer = client.post(
        "/console/sign-in",
        data={"token": token, "email": email, "csrf": csrf_of(form.text), "next": "/console"},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    page = client.get("/console")
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


def csp_refusals(page: Page) -> list[str]:
    """Collects what the page's Content-Security-Policy makes Chromium refuse (an inline script,
    style or handler would be), so a test can check the console works under it."""
    refused: list[str] = []
    page.on(
        "console",
        lambda message: (
            refused.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    return refused


def org_id_of(db: Database, slug: str = "acme") -> str:
    with db.session() as session:
        org = session.query(Organization).filter_by(slug=slug).one()
        return org.id


def add_snapshot(
    db: Database,
    blobs: FileBlobStore,
    org_id: str,
    *,
    url: str = "https://example.org/",
    kind: str = "page",
    status: str = "success",
    image: bytes | None = None,
    age: timedelta = timedelta(0),
    options: dict[str, object] | None = None,
) -> str:
    """A snapshot row as a finished capture leaves it, with a PNG image unless `status` says
    it has none yet."""
    now = utcnow() - age
    with db.session() as session:
        snapshot = Snapshot(
            org_id=org_id,
            kind=kind,
            status=status,
            url=url,
            options=options or {},
            created_at=now,
            completed_at=now if status == "success" else None,
            expires_at=utcnow() + timedelta(days=30),
        )
        session.add(snapshot)
        session.flush()
        if status == "success":
            data = image or png()
            width, height = Image.open(io.BytesIO(data)).size
            session.add(
                Artifact(
                    snapshot_id=snapshot.id,
                    role="image",
                    sha256=blobs.put(data),
                    size=len(data),
                    media_type="image/png",
                    width=width,
                    height=height,
                )
            )
        return snapshot.id


@pytest.fixture
def admin_token(db: Database) -> str:
    return Accounts(db).create_token(org="acme", email=ADMIN, role="admin")


@pytest.fixture
def viewer_token(db: Database) -> str:
    return Accounts(db).create_token(org="acme", email=VIEWER, role="viewer")


@pytest.fixture
def client(settings: Settings, db: Database, blobs: FileBlobStore) -> Iterator[TestClient]:
    with TestClient(create_app(settings, db=db, blobs=blobs), base_url="http://testserver") as c:
        yield c
