"""The console's snapshot pages through the ASGI app: filters, search, paging, thumbnails and the
actions on one snapshot. Snapshots are written straight into the database as a worker leaves them."""

from __future__ import annotations

import io
import re
import zipfile
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select

from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from snapshotd.store.models import Artifact, AuditEvent, Location, Share, Snapshot, utcnow
from tests.console.conftest import add_snapshot, org_id_of, sign_in

CARD = re.compile(r'<li class="card[^"]*" data-status="\w+"')
LINK = re.compile(r'href="/console/snapshots/(snp_\w+)" class="card-link"')


def shown(client: TestClient, query: str = "") -> list[str]:
    answer = client.get(f"/console{query}")
    assert answer.status_code == 200, answer.text
    return LINK.findall(answer.text)


def thumbnails(db: Database, snapshot_id: str) -> int:
    with db.session() as session:
        statement = select(func.count()).where(
            Artifact.snapshot_id == snapshot_id, Artifact.role == "thumbnail"
        )
        return session.scalar(statement) or 0


@pytest.fixture
def signed_in(client: TestClient, admin_token: str) -> str:
    return sign_in(client, admin_token)


def test_filters_and_search_narrow_the_grid(
    client: TestClient, db: Database, blobs: FileBlobStore, signed_in: str
) -> None:
    org = org_id_of(db)
    with db.session() as session:
        location = Location(org_id=org, key="terms", name="Terms page", capture_url="https://x/")
        session.add(location)
        session.flush()
        location_id = location.id
    pricing = add_snapshot(db, blobs, org, url="https://shop.example/Pricing?a=1")
    old = add_snapshot(db, blobs, org, url="https://old.example/", age=timedelta(days=10))
    failed = add_snapshot(db, blobs, org, url="https://down.example/", status="failed")
    chart = add_snapshot(db, blobs, org, kind="chart", url="", options={"chart": {"name": "CPU"}})
    with db.session() as session:
        row = session.get(Snapshot, old)
        assert row is not None
        row.location_id = location_id
    queued = add_snapshot(db, blobs, org, url="https://pricing.other/", status="queued")

    assert shown(client, "?q=pricing") == [queued, pricing]
    assert shown(client, "?q=PRICING%3Fa") == [pricing]
    assert shown(client, "?q=%25") == []  # LIKE wildcards are matched literally
    assert shown(client, "?status=failed") == [failed]
    assert shown(client, "?kind=chart") == [chart]
    assert shown(client, f"?location={location_id}") == [old]
    day = (utcnow() - timedelta(days=10)).date().isoformat()
    assert shown(client, f"?since={day}&until={day}") == [old]
    assert old not in shown(client, f"?since={utcnow().date().isoformat()}")
    page = client.get("/console?kind=chart").text
    assert "CPU" in page and 'value="chart" selected' in page
    assert "Terms page" in client.get("/console").text


def test_bad_filters_answer_400_with_the_reason_on_the_page(
    client: TestClient, signed_in: str
) -> None:
    for query, reason in (
        ("?since=yesterday", "since must be a date"),
        ("?kind=video", "kind must be one of"),
        ("?since=2025-02-01&until=2025-01-01", "start date is after the end date"),
    ):
        answer = client.get(f"/console{query}")
        assert answer.status_code == 400 and reason in answer.text, query
        assert 'role="alert"' in answer.text


def test_pages_of_24_older_and_newer(
    client: TestClient, db: Database, blobs: FileBlobStore, signed_in: str
) -> None:
    org = org_id_of(db)
    ids = [add_snapshot(db, blobs, org, url=f"https://e.example/{n}") for n in range(30)]
    newest_first = ids[::-1]
    first = client.get("/console").text
    assert LINK.findall(first) == newest_first[:24]
    older = re.search(r'href="/console\?([^"]+)" rel="next"', first)
    assert older is not None and 'rel="prev"' not in first
    second = client.get("/console?" + older.group(1).replace("&amp;", "&")).text
    assert LINK.findall(second) == newest_first[24:]
    assert 'rel="next"' not in second
    newer = re.search(r'href="/console\?([^"]+)" rel="prev"', second)
    assert newer is not None
    back = client.get("/console?" + newer.group(1).replace("&amp;", "&")).text
    assert LINK.findall(back) == newest_first[:24]
    assert shown(client, "?q=e.example/2") == [ids[29], ids[28], ids[27], ids[26], ids[25]] + [
        ids[24],
        ids[23],
        ids[22],
        ids[21],
        ids[20],
        ids[2],
    ]


def test_thumbnail_is_made_once_and_stays_out_of_the_record(
    client: TestClient, db: Database, blobs: FileBlobStore, signed_in: str, admin_token: str
) -> None:
    org = org_id_of(db)
    tall = Image.new("RGB", (1200, 9000), (250, 250, 250))
    out = io.BytesIO()
    tall.save(out, format="PNG")
    snapshot_id = add_snapshot(db, blobs, org, image=out.getvalue())
    first = client.get(f"/console/snapshots/{snapshot_id}/thumbnail")
    assert first.status_code == 200 and first.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(first.content)).size == (400, 600)  # top of the page only
    second = client.get(f"/console/snapshots/{snapshot_id}/thumbnail")
    assert second.content == first.content and thumbnails(db, snapshot_id) == 1
    cached = client.get(
        f"/console/snapshots/{snapshot_id}/thumbnail",
        headers={"If-None-Match": first.headers["etag"]},
    )
    assert cached.status_code == 304 and thumbnails(db, snapshot_id) == 1

    api = {"Authorization": f"Bearer {admin_token}"}
    body = client.get(f"/api/v1/snapshots/{snapshot_id}", headers=api).json()
    assert [a["role"] for a in body["artifacts"]] == ["image"]
    listed = client.get("/api/v1/snapshots", headers=api).json()["items"][0]
    assert [a["role"] for a in listed["artifacts"]] == ["image"]
    with db.session() as session:
        snapshot = session.get(Snapshot, snapshot_id)
        assert snapshot is not None
        client.app.state.services.snapshots.seal(session, snapshot)  # type: ignore[attr-defined]
    bundle = client.get(f"/console/snapshots/{snapshot_id}/bundle")
    names = zipfile.ZipFile(io.BytesIO(bundle.content)).namelist()
    assert bundle.status_code == 200 and not any("thumbnail" in name for name in names)
    manifest = client.get(f"/console/snapshots/{snapshot_id}/files/manifest").json()
    assert [a["role"] for a in manifest["manifest"]["artifacts"]] == ["image"]


def test_no_thumbnail_without_an_image(
    client: TestClient, db: Database, blobs: FileBlobStore, signed_in: str
) -> None:
    queued = add_snapshot(db, blobs, org_id_of(db), status="queued")
    assert client.get(f"/console/snapshots/{queued}/thumbnail").status_code == 404
    assert client.get("/console/snapshots/snp_nothing/thumbnail").status_code == 404
    assert thumbnails(db, queued) == 0


def test_another_organizations_snapshot_is_not_found(
    client: TestClient, db: Database, blobs: FileBlobStore, signed_in: str
) -> None:
    from snapshotd.services.accounts import Accounts

    Accounts(db).create_token(org="other", email="x@other.test", role="admin")
    theirs = add_snapshot(db, blobs, org_id_of(db, "other"))
    for path in ("", "/thumbnail", "/files/image", "/status"):
        answer = client.get(f"/console/snapshots/{theirs}{path}")
        assert answer.status_code == 404, path
    assert theirs not in shown(client)


def test_status_json_and_detail_page(
    client: TestClient, db: Database, blobs: FileBlobStore, signed_in: str
) -> None:
    org = org_id_of(db)
    queued = add_snapshot(db, blobs, org, status="queued")
    status = client.get(f"/console/snapshots/{queued}/status").json()
    assert status["status"] == "queued" and status["done"] is False
    page = client.get(f"/console/snapshots/{queued}").text
    assert f'data-live="/console/snapshots/{queued}/status"' in page and "<progress" in page
    done = add_snapshot(db, blobs, org)
    status = client.get(f"/console/snapshots/{done}/status").json()
    assert status["done"] and status["thumbnail"] == f"/console/snapshots/{done}/thumbnail"
    page = client.get(f"/console/snapshots/{done}").text
    assert f'src="/console/snapshots/{done}/files/image"' in page
    image = client.get(f"/console/snapshots/{done}/files/image")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"


def test_hold_blocks_delete_until_released_and_everything_is_audited(
    client: TestClient, db: Database, blobs: FileBlobStore, signed_in: str
) -> None:
    snapshot_id = add_snapshot(db, blobs, org_id_of(db))
    base = f"/console/snapshots/{snapshot_id}"
    csrf = {"csrf": signed_in}
    held = client.post(f"{base}/hold", data={**csrf, "reason": "litigation"})
    assert held.status_code == 200 and "under legal hold" in held.text
    assert "Delete…" not in held.text and "litigation" in held.text
    refused = client.post(f"{base}/delete", data=csrf)
    assert refused.status_code == 409 and "lift the hold first" in refused.text
    assert "The legal hold is lifted" in client.post(f"{base}/release", data=csrf).text
    archived = client.post(f"{base}/archive", data={**csrf, "reason": "old"})
    assert "hidden from the default listing" in archived.text
    assert snapshot_id not in shown(client)
    assert snapshot_id in shown(client, "?archived=only")
    client.post(f"{base}/unarchive", data=csrf)
    confirm = client.get(f"{base}/delete")
    assert confirm.status_code == 200 and "cannot be undone" in confirm.text
    gone = client.post(f"{base}/delete", data=csrf)
    assert gone.status_code == 200 and "was deleted" in gone.text
    assert client.get(base).status_code == 404
    with db.session() as session:
        actions = list(
            session.scalars(select(AuditEvent.action).where(AuditEvent.target_id == snapshot_id))
        )
    assert {"held", "released", "archived", "unarchived", "deleted"} <= set(actions)


def test_share_links_are_created_listed_and_revoked(
    client: TestClient, db: Database, blobs: FileBlobStore, signed_in: str
) -> None:
    snapshot_id = add_snapshot(db, blobs, org_id_of(db))
    base = f"/console/snapshots/{snapshot_id}"
    page = client.post(f"{base}/shares", data={"csrf": signed_in, "public": "1"}).text
    share_url = re.search(r'value="(http://testserver/s/[\w-]{43})"', page)
    assert share_url is not None and "A share link was created" in page
    assert client.get(share_url.group(1)).status_code == 200
    share_id = share_url.group(1).rsplit("/", 1)[1]
    revoked = client.post(f"{base}/shares/{share_id}/revoke", data={"csrf": signed_in})
    assert "The share link is revoked" in revoked.text and "revoked · expires" in revoked.text
    assert client.get(share_url.group(1)).status_code == 410
    assert client.get(f"{share_url.group(1)}/verify").status_code == 410


def test_share_form_offers_the_evidence_and_replay_switches(
    client: TestClient, db: Database, blobs: FileBlobStore, signed_in: str
) -> None:
    snapshot_id = add_snapshot(db, blobs, org_id_of(db))
    base = f"/console/snapshots/{snapshot_id}"
    form = client.get(base).text
    assert 'name="evidence"' in form and 'name="replay"' in form
    page = client.post(
        f"{base}/shares", data={"csrf": signed_in, "public": "1", "evidence": "1"}
    ).text
    assert "Public · evidence · active" in page
    client.post(f"{base}/shares", data={"csrf": signed_in, "replay": "1"})
    with db.session() as session:
        rows = session.scalars(select(Share).where(Share.snapshot_id == snapshot_id))
        switches = sorted((row.public, row.evidence, row.replay) for row in rows)
    assert switches == [(False, False, True), (True, True, False)]


@pytest.mark.parametrize(
    ("form", "message", "field"),
    [
        ({"url": "ftp://example.org/"}, "scheme", "url"),
        ({"url": "http://10.1.2.3/"}, "", "url"),
        ({"url": "https://example.org/", "width": "50"}, "width", "width"),
        ({"url": "https://example.org/", "delay_ms": "abc"}, "delay_ms", "delay_ms"),
        ({"url": "https://example.org/", "format": "pdf", "selector": "#a"}, "selector", ""),
        ({"url": "https://example.org/", "timezone": "Mars/Base"}, "time zone", "timezone"),
        ({"url": "https://example.org/", "locale": "xx-QQ"}, "locale", "locale"),
        ({"url": "https://example.org/", "geolocation": "95,0"}, "latitude", "geolocation"),
        ({"url": "https://example.org/", "fail_on_status": "4xx"}, "range", "fail_on_status"),
        ({"url": "https://example.org/", "consent": "maybe"}, "consent", "consent"),
    ],
)
def test_bad_capture_input_is_shown_inline(
    client: TestClient, db: Database, signed_in: str, form: dict[str, str], message: str, field: str
) -> None:
    answer = client.post("/console/new", data={"csrf": signed_in, **form})
    assert answer.status_code == 400, answer.text
    assert 'role="alert" id="form-error"' in answer.text and message in answer.text
    assert f'value="{form["url"]}"' in answer.text  # the form keeps what was typed
    if field:
        assert re.search(rf'id="{field}"[^>]*aria-invalid="true"', answer.text), field
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Snapshot)) == 0


def test_a_good_capture_is_queued_and_opens_its_page(
    client: TestClient, db: Database, signed_in: str
) -> None:
    answer = client.post(
        "/console/new",
        data={"csrf": signed_in, "url": "https://example.org/", "full_page": "1", "width": "1024"},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    snapshot_id = answer.headers["location"].split("/")[-1].split("?")[0]
    with db.session() as session:
        snapshot = session.get(Snapshot, snapshot_id)
        assert snapshot is not None and snapshot.status == "queued"
        assert snapshot.options == {"url": "https://example.org/", "width": 1024, "full_page": True}
        assert snapshot.surface == "console"
    assert "The capture is queued" in client.get(answer.headers["location"]).text


def test_the_form_takes_the_real_world_page_options(
    client: TestClient, db: Database, signed_in: str
) -> None:
    form = {
        "url": "https://example.org/",
        "block_ads": "1",
        "freeze_animations": "1",
        "consent": "reject",
        "scroll_lazy": "false",
        "media": "print",
        "timezone": "America/New_York",
        "locale": "en-GB",
        "geolocation": "40.7,-74.0",
        "fail_on_status": "404, 500-599",
    }
    answer = client.post("/console/new", data={"csrf": signed_in, **form}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    with db.session() as session:
        snapshot = session.scalars(select(Snapshot)).one()
        assert snapshot.options == {
            "url": "https://example.org/",
            "block_ads": True,
            "freeze_animations": True,
            "consent": "reject",
            "scroll_lazy": False,
            "media": "print",
            "timezone": "America/New_York",
            "locale": "en-GB",
            "geolocation": {"latitude": 40.7, "longitude": -74.0},
            "fail_on_status": ["404", "500-599"],
        }


def test_unknown_console_addresses_and_static_files(client: TestClient) -> None:
    assert client.get("/console/static/console.css").headers["content-type"].startswith("text/css")
    assert client.get("/console/static/console.js").status_code == 200
    for path in ("/console/static/..%2Fapp.py", "/console/static/nope.css", "/console/nowhere"):
        answer = client.get(path)
        assert answer.status_code == 404 and answer.headers["content-type"].startswith("text/html")
