"""Locations, uploads, records and manifests against SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from PIL import Image

from snapshotd.config import Settings
from snapshotd.errors import BadRequest, Conflict
from snapshotd.services.accounts import Accounts, ensure_org
from snapshotd.services.evidence import Evidence
from snapshotd.services.graph import make_queue
from snapshotd.services.location_uploads import upload
from snapshotd.services.locations import LocationFields, Locations
from snapshotd.services.snapshots import Snapshots
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from snapshotd.store.models import utcnow


@pytest.fixture
def locations(any_db: Database, settings: Settings, blobs: FileBlobStore) -> Locations:
    return Locations(Snapshots(settings, any_db, make_queue(settings, any_db), blobs))


def org(db: Database) -> str:
    Accounts(db).create_token(org="acme", email="ops@acme.test", role="admin")
    with db.session() as session:
        return ensure_org(session, "acme").id


def png(color: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (50, 40), color).save(out, format="PNG")
    return out.getvalue()


def test_lifecycle_schedule_and_keys(locations: Locations, any_db: Database) -> None:
    acme = org(any_db)
    web = LocationFields(
        key="terms", name="Terms", capture_url="http://127.0.0.1/", frequency="daily"
    )
    created = locations.create(acme, web, actor="a")
    with pytest.raises(Conflict):
        locations.create(acme, web, actor="a")
    assert locations.due() == 0  # drafts are not scheduled
    locations.publish(acme, created.id, actor="a")
    assert locations.due() == 1 and locations.due() == 0
    items, total = locations.snapshots_of(acme, created.id, page=1, per_page=10)
    assert total == 1 and items[0].source == "automated" and items[0].status == "queued"
    assert items[0].options["url"] == "http://127.0.0.1/"
    with pytest.raises(BadRequest):
        locations.update(acme, created.id, LocationFields(key="renamed"), actor="a")
    assert [locations.clone(acme, created.id, actor="a").key for _ in range(2)] == [
        "terms-copy",
        "terms-copy-2",
    ]
    locations.archive(acme, created.id, actor="a", reason="replaced")
    with pytest.raises(BadRequest, match="archived"):
        locations.capture(acme, created.id, actor="a")


def test_uploads_records_and_manifests(
    locations: Locations, any_db: Database, blobs: FileBlobStore
) -> None:
    acme = org(any_db)
    app = locations.create(
        acme,
        LocationFields(key="app", name="App", application_id="com.acme", application_name="Acme"),
        actor="a",
    )
    assert app.location_type == "mobile_app" and app.mobile_os == "ios"
    first = upload(
        locations, acme, app.id, png("#ff0000"), actor="a", metadata={"app_version": "2"}
    )
    second = upload(locations, acme, app.id, png("#00ff00"), actor="a")
    roles = {a.role: a for a in first.artifacts}
    assert set(roles) == {"image", "manifest"} and first.source == "customer_provided"
    with blobs.open(roles["manifest"].sha256) as stream:
        manifest = json.loads(stream.read())
    listed = {a["role"]: a["sha256"] for a in manifest["manifest"]["artifacts"]}
    assert listed == {"image": roles["image"].sha256}
    assert manifest["signature"]["algorithm"] == "Ed25519"

    evidence = Evidence(locations)
    in_force, pdf = evidence.record(acme, app.id, at=utcnow())
    assert in_force.id == second.id and pdf.startswith(b"%PDF")
    assert roles["image"].sha256.encode() not in pdf  # the record is of the later upload
    earlier, _ = evidence.record(acme, app.id, snapshot_id=first.id)
    assert earlier.id == first.id
    with pytest.raises(Exception, match="had no snapshot"):
        evidence.record(acme, app.id, at=utcnow() - timedelta(days=1))
