"""Share links, retention, legal hold, archive and the audit log, end to end over HTTP.

Everything here is real: SQLite files and a real PostgreSQL (through `any_db`), the blob store on
disk, and the app built by `create_app`. A snapshot is made "successful" without a browser by writing
its status and an image artifact straight into the database; time is moved by putting `expires_at`
in the past rather than by sleeping (one test sleeps, to show a link dies at its own expiry).
"""

from __future__ import annotations

import io
import json
import re
import secrets
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select

from snapshotd.config import Settings
from snapshotd.http.app import create_app
from snapshotd.services.accounts import Accounts
from snapshotd.services.retention import sweep
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from snapshotd.store.models import Artifact, Share, Snapshot, utcnow

SHARE_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")
ADMIN_EMAIL = "ops@acme.test"
MANAGER_EMAIL = "manager@acme.test"
VIEWER_EMAIL = "viewer@acme.test"

Headers = dict[str, str]


# -- helpers -----------------------------------------------------------------------------------


def png_bytes(
    colour: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (64, 40)
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def bearer(db: Database, *, org: str, email: str, role: str) -> Headers:
    return {"Authorization": "Bearer " + Accounts(db).create_token(org=org, email=email, role=role)}


def parse_iso(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value)


def queue_snapshot(client: TestClient, headers: Headers, url: str) -> str:
    response = client.post("/api/v1/snapshots", headers=headers, json={"url": url})
    assert response.status_code == 202, response.text
    snapshot_id: str = response.json()["id"]
    return snapshot_id


def succeed(db: Database, blobs: FileBlobStore, snapshot_id: str, data: bytes) -> str:
    """Does what a worker's finish() does for one PNG image; returns the blob's digest."""
    digest = blobs.put(data)
    width, height = Image.open(io.BytesIO(data)).size
    with db.session() as session:
        snapshot = session.get(Snapshot, snapshot_id)
        assert snapshot is not None
        snapshot.status = "success"
        snapshot.completed_at = utcnow()
        snapshot.meta = {"title": "Example page"}
        session.add(
            Artifact(
                snapshot_id=snapshot_id,
                role="image",
                sha256=digest,
                size=len(data),
                media_type="image/png",
                width=width,
                height=height,
            )
        )
    return digest


def ready_snapshot(
    client: TestClient,
    db: Database,
    blobs: FileBlobStore,
    headers: Headers,
    *,
    url: str = "https://example.org/report",
    data: bytes | None = None,
) -> tuple[str, str]:
    """A successful snapshot with a PNG image: (snapshot id, blob digest)."""
    snapshot_id = queue_snapshot(client, headers, url)
    return snapshot_id, succeed(db, blobs, snapshot_id, data or png_bytes())


def share(
    client: TestClient, headers: Headers, snapshot_id: str, **body: object
) -> dict[str, object]:
    response = client.post(f"/api/v1/snapshots/{snapshot_id}/shares", headers=headers, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, object] = response.json()
    return created


def past() -> datetime:
    return utcnow() - timedelta(seconds=1)


def expire_snapshot(db: Database, snapshot_id: str) -> None:
    with db.session() as session:
        snapshot = session.get(Snapshot, snapshot_id)
        assert snapshot is not None
        snapshot.expires_at = past()


def expire_share(db: Database, share_id: str) -> None:
    with db.session() as session:
        row = session.get(Share, share_id)
        assert row is not None
        row.expires_at = past()


def listed(client: TestClient, headers: Headers, query: str = "") -> list[str]:
    response = client.get(f"/api/v1/snapshots{query}", headers=headers)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def share_rows(db: Database, snapshot_id: str) -> int:
    with db.session() as session:
        return (
            session.scalar(
                select(func.count()).select_from(Share).where(Share.snapshot_id == snapshot_id)
            )
            or 0
        )


def snapshot_exists(db: Database, snapshot_id: str) -> bool:
    with db.session() as session:
        return session.get(Snapshot, snapshot_id) is not None


def is_html(response: object) -> bool:
    return str(getattr(response, "headers", {}).get("content-type", "")).startswith("text/html")


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def quick(settings: Settings) -> Settings:
    """The test settings with no blob grace, so a sweep may delete a blob written just now."""
    return settings.model_copy(update={"blob_grace_seconds": 0})


@pytest.fixture
def admin(any_db: Database) -> Headers:
    return bearer(any_db, org="acme", email=ADMIN_EMAIL, role="admin")


@pytest.fixture
def client(quick: Settings, any_db: Database, blobs: FileBlobStore) -> Iterator[TestClient]:
    with TestClient(create_app(quick, db=any_db, blobs=blobs)) as test_client:
        yield test_client


# -- 1. creating and listing links -------------------------------------------------------------


def test_create_share_answers_201_with_an_unguessable_id_capped_by_the_snapshot(
    client: TestClient, any_db: Database, blobs: FileBlobStore, admin: Headers
) -> None:
    snapshot_id, _ = ready_snapshot(client, any_db, blobs, admin)
    snapshot = client.get(f"/api/v1/snapshots/{snapshot_id}", headers=admin).json()

    response = client.post(f"/api/v1/snapshots/{snapshot_id}/shares", headers=admin, json={})
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    share_id = body["id"]
    assert SHARE_ID.match(share_id), share_id
    assert body["url"] == f"http://testserver/s/{share_id}"
    assert body["url"].endswith(f"/s/{share_id}")
    assert body["snapshot_id"] == snapshot_id
    assert body["public"] is True
    assert body["state"] == "active"
    assert body["created_by"] == ADMIN_EMAIL
    assert body["revoked_at"] is None
    assert body["created_at"].endswith("Z")
    assert parse_iso(body["expires_at"]) <= parse_iso(snapshot["expires_at"])
    assert parse_iso(body["expires_at"]) > utcnow()

    # A longer life than the snapshot's is capped at the snapshot's expiry.
    capped = share(client, admin, snapshot_id, expires_in=10 * 365 * 86_400)
    assert parse_iso(str(capped["expires_at"])) <= parse_iso(snapshot["expires_at"])
    short = share(client, admin, snapshot_id, expires_in=3600, public=False)
    assert parse_iso(str(short["expires_at"])) <= utcnow() + timedelta(seconds=3601)
    assert short["public"] is False
    assert len({share_id, capped["id"], short["id"]}) == 3

    listing = client.get(f"/api/v1/snapshots/{snapshot_id}/shares", headers=admin)
    assert listing.status_code == 200
    assert listing.headers["cache-control"] == "no-store"
    items = listing.json()["items"]
    assert [item["id"] for item in items] == [short["id"], capped["id"], share_id]
    assert items[2] == body

    # `public` is a JSON boolean: 0 and "no" are refused rather than read as false.
    for bad in ({"expires_in": 0}, {"expires_in": -5}, {"colour": "red"}, {"public": 0}):
        refused = client.post(f"/api/v1/snapshots/{snapshot_id}/shares", headers=admin, json=bad)
        assert refused.status_code == 400, (bad, refused.text)
    missing = client.post("/api/v1/snapshots/snp_nope/shares", headers=admin, json={})
    assert missing.status_code == 404
    assert client.post(f"/api/v1/snapshots/{snapshot_id}/shares", json={}).status_code == 401


# -- 2. the public page --------------------------------------------------------------------------


def test_public_link_shows_the_page_and_exact_image_signed_out(
    client: TestClient, any_db: Database, blobs: FileBlobStore, admin: Headers
) -> None:
    data = png_bytes((10, 120, 240), (80, 50))
    snapshot_id, digest = ready_snapshot(
        client, any_db, blobs, admin, url="https://example.org/quarterly", data=data
    )
    share_id = share(client, admin, snapshot_id)["id"]

    page = client.get(f"/s/{share_id}")
    assert page.status_code == 200, page.text
    assert is_html(page)
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "https://example.org/quarterly" in page.text
    image_url = f"http://testserver/s/{share_id}/image"
    assert f'<meta property="og:image" content="{image_url}">' in page.text
    assert '<meta property="og:image:width" content="80">' in page.text
    assert '<meta property="og:image:height" content="50">' in page.text
    assert digest in page.text

    image = client.get(f"/s/{share_id}/image")
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
    assert image.headers["cache-control"] == "no-store"
    assert image.headers["content-length"] == str(len(data))
    assert image.content == data

    html = client.get(f"/s/{share_id}/html")
    assert html.status_code == 404
    assert is_html(html)
    assert html.headers["cache-control"] == "no-store"
    pdf = client.get(f"/s/{share_id}/pdf")
    assert pdf.status_code == 404


# -- 3. revocation -----------------------------------------------------------------------------


def test_revoked_link_is_410_at_once_on_every_process(
    client: TestClient, quick: Settings, any_db: Database, blobs: FileBlobStore, admin: Headers
) -> None:
    snapshot_id, _ = ready_snapshot(client, any_db, blobs, admin)
    share_id = str(share(client, admin, snapshot_id)["id"])
    rival = bearer(any_db, org="rival", email="x@rival.test", role="admin")

    # A second API process: its own app and its own engine on the same database.
    other_db = Database.from_url(any_db.engine.url.render_as_string(hide_password=False))
    try:
        with TestClient(create_app(quick, db=other_db, blobs=blobs)) as other:
            assert other.get(f"/s/{share_id}").status_code == 200
            assert client.get(f"/s/{share_id}/image").status_code == 200

            assert client.delete(f"/api/v1/shares/{share_id}", headers=rival).status_code == 404
            assert client.get(f"/s/{share_id}").status_code == 200

            revoked = client.delete(f"/api/v1/shares/{share_id}", headers=admin)
            assert revoked.status_code == 204
            assert revoked.content == b""
            assert revoked.headers["cache-control"] == "no-store"

            page = client.get(f"/s/{share_id}")
            assert page.status_code == 410
            assert is_html(page)
            assert page.headers["cache-control"] == "no-store"
            assert "revoked" in page.text
            assert "HTTP 410" in page.text
            assert client.get(f"/s/{share_id}/image").status_code == 410

            elsewhere = other.get(f"/s/{share_id}")
            assert elsewhere.status_code == 410
            assert is_html(elsewhere)
            assert other.get(f"/s/{share_id}/image").status_code == 410
    finally:
        other_db.dispose()

    again = client.delete(f"/api/v1/shares/{share_id}", headers=admin)
    assert again.status_code == 204
    items = client.get(f"/api/v1/snapshots/{snapshot_id}/shares", headers=admin).json()["items"]
    assert [(item["id"], item["state"]) for item in items] == [(share_id, "revoked")]
    assert items[0]["revoked_at"].endswith("Z")
    assert client.delete("/api/v1/shares/not-a-share", headers=admin).status_code == 404
    # The snapshot itself is untouched.
    assert client.get(f"/api/v1/snapshots/{snapshot_id}", headers=admin).status_code == 200


# -- 4. private links ----------------------------------------------------------------------------


def test_private_link_needs_a_member_of_the_owning_organization(
    client: TestClient, any_db: Database, blobs: FileBlobStore, admin: Headers
) -> None:
    data = png_bytes((0, 160, 0))
    snapshot_id, _ = ready_snapshot(client, any_db, blobs, admin, data=data)
    created = share(client, admin, snapshot_id, public=False)
    assert created["public"] is False
    share_id = created["id"]
    member = bearer(any_db, org="acme", email=VIEWER_EMAIL, role="viewer")
    rival = bearer(any_db, org="rival", email="boss@rival.test", role="admin")

    signed_out = client.get(f"/s/{share_id}")
    assert signed_out.status_code == 404
    assert is_html(signed_out)
    assert client.get(f"/s/{share_id}/image").status_code == 404

    for headers in (admin, member):
        page = client.get(f"/s/{share_id}", headers=headers)
        assert page.status_code == 200, page.text
        assert "https://example.org/report" in page.text
        image = client.get(f"/s/{share_id}/image", headers=headers)
        assert image.status_code == 200
        assert image.content == data

    assert client.get(f"/s/{share_id}", headers=rival).status_code == 404
    assert client.get(f"/s/{share_id}/image", headers=rival).status_code == 404
    # A revoked private link stays a 404 for outsiders: its existence is not confirmed.
    assert client.delete(f"/api/v1/shares/{share_id}", headers=admin).status_code == 204
    assert client.get(f"/s/{share_id}", headers=rival).status_code == 404
    assert client.get(f"/s/{share_id}").status_code == 404
    assert client.get(f"/s/{share_id}", headers=member).status_code == 410


# -- 5. expiry before any sweep ---------------------------------------------------------------------


def test_expired_link_is_404_without_a_sweep(
    client: TestClient, any_db: Database, blobs: FileBlobStore, admin: Headers
) -> None:
    snapshot_id, _ = ready_snapshot(client, any_db, blobs, admin)
    share_id = str(share(client, admin, snapshot_id)["id"])
    assert client.get(f"/s/{share_id}").status_code == 200

    expire_share(any_db, share_id)
    page = client.get(f"/s/{share_id}")
    assert page.status_code == 404
    assert is_html(page)
    assert client.get(f"/s/{share_id}/image").status_code == 404
    items = client.get(f"/api/v1/snapshots/{snapshot_id}/shares", headers=admin).json()["items"]
    assert [(item["id"], item["state"]) for item in items] == [(share_id, "expired")]
    assert share_rows(any_db, snapshot_id) == 1  # nothing was swept
    assert client.get(f"/api/v1/snapshots/{snapshot_id}", headers=admin).status_code == 200


def test_link_dies_at_its_own_expiry(
    client: TestClient, any_db: Database, blobs: FileBlobStore, admin: Headers
) -> None:
    snapshot_id, _ = ready_snapshot(client, any_db, blobs, admin)
    created = share(client, admin, snapshot_id, expires_in=1)
    share_id = str(created["id"])
    expires_at = parse_iso(str(created["expires_at"]))
    assert expires_at <= utcnow() + timedelta(seconds=1)
    assert client.get(f"/s/{share_id}").status_code == 200

    time.sleep(max(0.0, (expires_at + timedelta(seconds=1) - utcnow()).total_seconds()))
    assert client.get(f"/s/{share_id}").status_code == 404
    assert client.get(f"/s/{share_id}/image").status_code == 404
    assert share_rows(any_db, snapshot_id) == 1  # no sweep ran: the read itself refused it


def test_expired_snapshot_is_gone_everywhere_before_any_sweep(
    client: TestClient, any_db: Database, blobs: FileBlobStore, admin: Headers
) -> None:
    keep_id, _ = ready_snapshot(client, any_db, blobs, admin, url="https://example.org/keep")
    gone_id, digest = ready_snapshot(
        client, any_db, blobs, admin, url="https://example.org/gone", data=png_bytes((1, 2, 3))
    )
    share_id = share(client, admin, gone_id)["id"]
    assert listed(client, admin) == [gone_id, keep_id]

    expire_snapshot(any_db, gone_id)
    assert client.get(f"/s/{share_id}").status_code == 404
    assert client.get(f"/s/{share_id}/image").status_code == 404
    got = client.get(f"/api/v1/snapshots/{gone_id}", headers=admin)
    assert got.status_code == 404
    assert got.headers["content-type"] == "application/problem+json"
    assert client.get(f"/api/v1/snapshots/{gone_id}/image", headers=admin).status_code == 404
    assert client.get(f"/api/v1/snapshots/{gone_id}/shares", headers=admin).status_code == 404
    assert client.post(f"/api/v1/snapshots/{gone_id}/shares", headers=admin).status_code == 404
    assert listed(client, admin) == [keep_id]
    assert listed(client, admin, "?archived=include") == [keep_id]
    # Only reads refused it: the rows and the blob are still there for the sweeper.
    assert snapshot_exists(any_db, gone_id)
    assert share_rows(any_db, gone_id) == 1
    assert blobs.exists(digest)


# -- 6. the sweeper ------------------------------------------------------------------------------


def test_sweep_deletes_expired_snapshots_links_and_unshared_blobs(
    client: TestClient, quick: Settings, any_db: Database, blobs: FileBlobStore, admin: Headers
) -> None:
    shared_bytes = png_bytes((9, 9, 9))
    live_id, shared_digest = ready_snapshot(
        client, any_db, blobs, admin, url="https://example.org/live", data=shared_bytes
    )
    twin_id, twin_digest = ready_snapshot(
        client, any_db, blobs, admin, url="https://example.org/twin", data=shared_bytes
    )
    lone_id, lone_digest = ready_snapshot(
        client, any_db, blobs, admin, url="https://example.org/lone", data=png_bytes((7, 7, 7))
    )
    assert twin_digest == shared_digest != lone_digest
    live_share = share(client, admin, live_id)["id"]
    twin_shares = [share(client, admin, twin_id)["id"], share(client, admin, twin_id)["id"]]
    share(client, admin, lone_id)

    expire_snapshot(any_db, twin_id)
    expire_snapshot(any_db, lone_id)
    report = sweep(quick, any_db, blobs)

    assert (report.snapshots, report.blobs) == (2, 1)
    for gone in (twin_id, lone_id):
        assert not snapshot_exists(any_db, gone)
        assert share_rows(any_db, gone) == 0
    with any_db.session() as session:
        remaining = set(session.scalars(select(Artifact.snapshot_id)))
    assert remaining == {live_id}
    assert not blobs.exists(lone_digest)
    assert blobs.exists(shared_digest)

    image = client.get(f"/api/v1/snapshots/{live_id}/image", headers=admin)
    assert image.status_code == 200
    assert image.content == shared_bytes
    assert client.get(f"/s/{live_share}/image").content == shared_bytes
    for share_id in twin_shares:
        assert client.get(f"/s/{share_id}").status_code == 404
    assert share_rows(any_db, live_id) == 1

    audit = client.get("/api/v1/audit?action=deleted", headers=admin).json()["items"]
    assert sorted(event["target_id"] for event in audit) == sorted([twin_id, lone_id])
    assert all(
        event["actor"] == "system" and event["detail"] == {"reason": "expired"} for event in audit
    )
    again = sweep(quick, any_db, blobs)
    assert (again.snapshots, again.blobs) == (0, 0)
    assert blobs.exists(shared_digest)


# -- 7. legal hold -----------------------------------------------------------------------------


def test_legal_hold_keeps_an_expired_snapshot_until_released(
    client: TestClient, quick: Settings, any_db: Database, blobs: FileBlobStore, admin: Headers
) -> None:
    data = png_bytes((90, 0, 90))
    snapshot_id, digest = ready_snapshot(client, any_db, blobs, admin, data=data)
    share_id = share(client, admin, snapshot_id)["id"]
    manager = bearer(any_db, org="acme", email=MANAGER_EMAIL, role="manager")
    hold_path = f"/api/v1/snapshots/{snapshot_id}/hold"

    refused = client.put(hold_path, headers=manager, json={"reason": "litigation"})
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert client.delete(hold_path, headers=manager).status_code == 403

    held = client.put(hold_path, headers=admin, json={"reason": "litigation"})
    assert held.status_code == 200, held.text
    hold = held.json()["legal_hold"]
    assert hold["reason"] == "litigation"
    assert hold["by"] == ADMIN_EMAIL
    assert hold["at"].endswith("Z")

    expire_snapshot(any_db, snapshot_id)
    got = client.get(f"/api/v1/snapshots/{snapshot_id}", headers=admin)
    assert got.status_code == 200
    assert got.json()["legal_hold"]["reason"] == "litigation"
    assert parse_iso(got.json()["expires_at"]) < utcnow()
    assert snapshot_id in listed(client, admin)
    assert client.get(f"/api/v1/snapshots/{snapshot_id}/image", headers=admin).content == data
    assert client.get(f"/s/{share_id}/image").content == data

    report = sweep(quick, any_db, blobs)
    assert report.snapshots == 0
    assert snapshot_exists(any_db, snapshot_id)
    assert blobs.exists(digest)

    deleting = client.delete(f"/api/v1/snapshots/{snapshot_id}", headers=admin)
    assert deleting.status_code == 409
    assert "legal hold" in deleting.json()["detail"]
    assert snapshot_exists(any_db, snapshot_id)

    released = client.delete(hold_path, headers=admin)
    assert released.status_code == 200, released.text
    assert released.json()["legal_hold"] is None

    assert client.get(f"/api/v1/snapshots/{snapshot_id}", headers=admin).status_code == 404
    assert snapshot_id not in listed(client, admin)
    assert client.get(f"/s/{share_id}").status_code == 404
    assert client.delete(f"/api/v1/snapshots/{snapshot_id}", headers=admin).status_code == 404

    report = sweep(quick, any_db, blobs)
    assert report.snapshots == 1
    assert not snapshot_exists(any_db, snapshot_id)
    assert share_rows(any_db, snapshot_id) == 0
    assert not blobs.exists(digest)


# -- 8. archive --------------------------------------------------------------------------------


def test_archive_hides_from_default_listings_only(
    client: TestClient, any_db: Database, blobs: FileBlobStore, admin: Headers
) -> None:
    manager = bearer(any_db, org="acme", email=MANAGER_EMAIL, role="manager")
    viewer = bearer(any_db, org="acme", email=VIEWER_EMAIL, role="viewer")
    kept_id, _ = ready_snapshot(client, any_db, blobs, admin, url="https://example.org/kept")
    old_id, _ = ready_snapshot(client, any_db, blobs, admin, url="https://example.org/old")
    archive_path = f"/api/v1/snapshots/{old_id}/archive"

    forbidden = client.post(archive_path, headers=viewer, json={"reason": "nope"})
    assert forbidden.status_code == 403
    assert forbidden.headers["content-type"] == "application/problem+json"

    archived = client.post(archive_path, headers=manager, json={"reason": "superseded"})
    assert archived.status_code == 200, archived.text
    marker = archived.json()["archived"]
    assert marker["by"] == MANAGER_EMAIL
    assert marker["reason"] == "superseded"
    assert marker["at"].endswith("Z")

    assert listed(client, admin) == [kept_id]
    assert listed(client, viewer) == [kept_id]
    assert listed(client, admin, "?archived=include") == [old_id, kept_id]
    assert listed(client, admin, "?archived=only") == [old_id]
    assert client.get("/api/v1/snapshots?archived=bogus", headers=admin).status_code == 400
    got = client.get(f"/api/v1/snapshots/{old_id}", headers=viewer)
    assert got.status_code == 200
    assert got.json()["archived"] == marker
    assert client.get(f"/api/v1/snapshots/{old_id}/image", headers=viewer).status_code == 200

    unarchive_path = f"/api/v1/snapshots/{old_id}/unarchive"
    assert client.post(unarchive_path, headers=viewer).status_code == 403
    assert listed(client, admin, "?archived=only") == [old_id]
    restored = client.post(unarchive_path, headers=manager)
    assert restored.status_code == 200
    assert restored.json()["archived"] is None
    assert listed(client, admin) == [old_id, kept_id]
    assert listed(client, admin, "?archived=only") == []


# -- 9. audit ----------------------------------------------------------------------------------


def test_audit_log_records_who_did_what_newest_first(
    client: TestClient, any_db: Database, blobs: FileBlobStore, admin: Headers
) -> None:
    manager = bearer(any_db, org="acme", email=MANAGER_EMAIL, role="manager")
    rival = bearer(any_db, org="rival", email="boss@rival.test", role="admin")

    snapshot_id, _ = ready_snapshot(client, any_db, blobs, admin)
    share_id = str(share(client, admin, snapshot_id)["id"])
    path = f"/api/v1/snapshots/{snapshot_id}"
    assert (
        client.post(f"{path}/archive", headers=manager, json={"reason": "done"}).status_code == 200
    )
    assert (
        client.put(f"{path}/hold", headers=admin, json={"reason": "litigation"}).status_code == 200
    )
    assert client.delete(f"/api/v1/shares/{share_id}", headers=admin).status_code == 204
    assert client.delete(path, headers=manager).status_code == 409
    assert client.delete(f"{path}/hold", headers=admin).status_code == 200
    assert client.delete(path, headers=manager).status_code == 204

    response = client.get("/api/v1/audit", headers=admin)
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    ours = [
        (event["action"], event["actor"], event["target_type"], event["target_id"])
        for event in items
        if event["target_type"] in ("snapshot", "share")
    ]
    assert ours == [
        ("deleted", MANAGER_EMAIL, "snapshot", snapshot_id),
        ("released", ADMIN_EMAIL, "snapshot", snapshot_id),
        ("revoked", ADMIN_EMAIL, "share", share_id[:8]),
        ("held", ADMIN_EMAIL, "snapshot", snapshot_id),
        ("archived", MANAGER_EMAIL, "snapshot", snapshot_id),
        ("shared", ADMIN_EMAIL, "snapshot", snapshot_id),
        ("created", ADMIN_EMAIL, "snapshot", snapshot_id),
    ]
    # The newest entries come first, by time as well as by position.
    times = [parse_iso(event["at"]) for event in items]
    assert times == sorted(times, reverse=True)
    by_action = {event["action"]: event for event in items if event["target_type"] != "token"}
    assert by_action["shared"]["detail"] == {"share": share_id[:8], "public": True}
    assert by_action["revoked"]["detail"] == {"snapshot": snapshot_id}
    assert by_action["held"]["detail"] == {"reason": "litigation"}
    assert by_action["archived"]["detail"] == {"reason": "done"}
    assert by_action["created"]["detail"] == {"surface": "native"}
    # The link is a secret: the log keeps only a prefix of it.
    assert share_id not in response.text
    assert share_id not in json.dumps(items)

    shared = client.get("/api/v1/audit?action=shared", headers=admin)
    assert shared.status_code == 200
    assert [(e["action"], e["target_id"]) for e in shared.json()["items"]] == [
        ("shared", snapshot_id)
    ]
    mine = client.get(f"/api/v1/audit?actor={MANAGER_EMAIL}", headers=admin).json()["items"]
    assert [e["action"] for e in mine] == ["deleted", "archived"]
    target = client.get(f"/api/v1/audit?target_id={share_id[:8]}", headers=admin).json()["items"]
    assert [e["action"] for e in target] == ["revoked"]

    denied = client.get("/api/v1/audit", headers=manager)
    assert denied.status_code == 403
    assert denied.headers["content-type"] == "application/problem+json"

    theirs = client.get("/api/v1/audit", headers=rival)
    assert theirs.status_code == 200
    rival_items = theirs.json()["items"]
    assert all(event["target_type"] == "token" for event in rival_items)
    assert snapshot_id not in theirs.text
    assert share_id[:8] not in theirs.text
    assert "acme.test" not in theirs.text
    assert client.get("/api/v1/audit?action=shared", headers=rival).json()["items"] == []


# -- 10. guessing links ---------------------------------------------------------------------------


def test_guessing_share_ids_is_404_then_429(
    settings: Settings, db: Database, blobs: FileBlobStore
) -> None:
    guarded = settings.model_copy(update={"share_misses_per_minute": 50})
    guesses = [secrets.token_urlsafe(32) for _ in range(10_000)]
    statuses: dict[int, int] = {}
    first_limited: int | None = None
    tried = 0
    started = time.monotonic()
    with TestClient(create_app(guarded, db=db, blobs=blobs)) as client:
        owner = bearer(db, org="acme", email=ADMIN_EMAIL, role="admin")
        snapshot_id, _ = ready_snapshot(client, db, blobs, owner)
        real = share(client, owner, snapshot_id)["id"]
        assert client.get(f"/s/{real}").status_code == 200
        for index, guess in enumerate(guesses):
            response = client.get(f"/s/{guess}")
            tried += 1
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            assert response.status_code in (404, 429), (index, response.status_code)
            assert is_html(response)
            if response.status_code == 429:
                assert int(response.headers["retry-after"]) >= 1
                if first_limited is None:
                    first_limited = index
            if first_limited is not None and index - first_limited >= 200:
                break
        # A real link from the same address is refused too while the address is limited. A token
        # refills every 1.2 s, so on a slow machine one may arrive between two requests: ask right
        # after a refused guess, a few times.
        refused_real = False
        for _ in range(5):
            if client.get(f"/s/{secrets.token_urlsafe(32)}").status_code != 429:
                continue
            if client.get(f"/s/{real}").status_code == 429:
                refused_real = True
                break
        assert refused_real

    assert first_limited is not None
    assert 50 <= first_limited <= 55  # the budget, plus what refilled during the loop
    assert tried >= 250
    assert set(statuses) <= {404, 429}
    assert statuses[429] >= 150
    assert time.monotonic() - started < 20
