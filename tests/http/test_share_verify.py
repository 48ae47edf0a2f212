"""A share link's verify page and evidence bundle, end to end: real Chromium captures a page served
by the test, a real RFC 3161 TSA on loopback (tests/tsa.py) stamps its manifest, and the page is
read through the app with its in-process worker. Tampering is done the way it would happen, by
changing what is stored (a manifest blob, an artifact row), never by stubbing the check."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from snapshotd.config import Settings
from snapshotd.services import agents, manifests
from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from snapshotd.store.models import Artifact, Share, utcnow
from tests.pages import PageServer
from tests.tsa import LocalTsa


@pytest.fixture
def tsa() -> Iterator[LocalTsa]:
    with LocalTsa("Test TSA") as server:
        yield server


@pytest.fixture
def settings(tmp_path: Path, tsa: LocalTsa) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        egress_allow=["127.0.0.1/32"],
        job_lease_seconds=5,
        poll_interval_seconds=0.05,
        capture_timeout_ms=10_000,
        tsa_urls=[tsa.url],
        tsa_ca_file=str(tsa.ca),
    )


def stamped_capture(client: TestClient, auth: dict[str, str], url: str) -> dict[str, Any]:
    """A real capture of `url`, once it succeeded and its manifest is timestamped."""
    created = client.post("/api/v1/snapshots", headers=auth, json={"url": url})
    assert created.status_code == 202, created.text
    snapshot_id = created.json()["id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(f"/api/v1/snapshots/{snapshot_id}", headers=auth).json()
        assert body["status"] != "failed", body
        if body["status"] == "success" and body["metadata"].get("timestamp") == "stamped":
            return body
        time.sleep(0.1)
    raise AssertionError(f"snapshot {snapshot_id} was not stamped in time")


def share(
    client: TestClient, auth: dict[str, str], snapshot_id: str, **body: object
) -> dict[str, Any]:
    response = client.post(f"/api/v1/snapshots/{snapshot_id}/shares", headers=auth, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def stored(db: Database, snapshot_id: str) -> dict[str, Artifact]:
    with db.session() as session:
        rows = session.scalars(select(Artifact).where(Artifact.snapshot_id == snapshot_id))
        return {row.role: row for row in rows}


def members(bundle: bytes) -> dict[str, bytes]:
    archive = zipfile.ZipFile(io.BytesIO(bundle))
    return {name: archive.read(name) for name in archive.namelist()}


def test_verify_page_of_a_stamped_capture_shows_its_digests_signature_and_token(
    live_api: TestClient,
    auth: dict[str, str],
    pages: PageServer,
    db: Database,
    tsa: LocalTsa,
    tmp_path: Path,
) -> None:
    snapshot = stamped_capture(live_api, auth, pages.url + "/")
    (entry,) = snapshot["metadata"]["timestamps"]
    link = share(live_api, auth, snapshot["id"], evidence=True)
    assert link["evidence"] is True and link["replay"] is False
    path = f"/s/{link['id']}"

    shown = live_api.get(path)
    assert shown.status_code == 200 and f'href="{link["url"]}/verify"' in shown.text
    assert f'href="{link["url"]}/bundle"' in shown.text

    page = live_api.get(f"{path}/verify")
    assert page.status_code == 200, page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert '<strong id="verdict" class="verdict-valid">valid</strong>' in page.text
    rows = stored(db, snapshot["id"])
    assert {"image", "html", "manifest", "timestamp"} <= set(rows)
    for row in rows.values():
        if row.role != "thumbnail":
            assert row.sha256 in page.text, row.role
    key = live_api.get("/.well-known/snapshotd-manifest-key").json()
    assert key["key_id"] in page.text and key["public_key"] in page.text
    assert "Test TSA" in page.text and entry["time"] in page.text and entry["serial"] in page.text
    manifest_sha256 = rows["manifest"].sha256
    assert f"openssl ts -verify -in timestamp.tsr -digest {manifest_sha256}" in page.text
    assert f"snapshotd verify {snapshot['id']}.zip --key manifest-key.pem" in page.text

    answer = live_api.get(f"{path}/verify.json")
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["manifest"] == "valid" and body["manifest_sha256"] == manifest_sha256
    assert body["signature"]["key_id"] == key["key_id"]
    assert body["signature"]["instance_key_id"] == key["key_id"]
    digests = {a["role"]: (a["sha256"], a["size"], a["check"]) for a in body["artifacts"]}
    assert digests["image"] == (rows["image"].sha256, rows["image"].size, "matches")
    assert digests["manifest"][2] == "manifest" and digests["timestamp"][2] == "timestamp"
    assert "thumbnail" not in digests
    (token,) = body["timestamps"]
    assert token["tsa"] == "Test TSA" and token["time"] == entry["time"]
    assert token["serial"] == entry["serial"]
    assert token["valid"] and token["over_manifest"] and token["anchored"]
    assert body["timestamp"] == "stamped"
    assert body["bundle_url"] == f"{link['url']}/bundle"

    served = live_api.get(f"{path}/bundle")
    assert served.status_code == 200 and served.headers["content-type"] == "application/zip"
    assert served.headers["cache-control"] == "no-store"
    native = live_api.get(f"/api/v1/snapshots/{snapshot['id']}/bundle", headers=auth)
    assert members(served.content) == members(native.content)
    bundle, key_file = tmp_path / "bundle.zip", tmp_path / "key.pem"
    bundle.write_bytes(served.content)
    key_file.write_text(key["pem"])
    checked = subprocess.run(
        [sys.executable, "-m", "snapshotd", "verify", str(bundle)]
        + ["--key", str(key_file), "--tsa-ca", str(tsa.ca)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_changed_artifact_row_or_manifest_makes_the_page_say_invalid(
    live_api: TestClient,
    auth: dict[str, str],
    pages: PageServer,
    db: Database,
    blobs: FileBlobStore,
) -> None:
    snapshot = stamped_capture(live_api, auth, pages.url + "/")
    path = f"/s/{share(live_api, auth, snapshot['id'])['id']}"
    rows = stored(db, snapshot["id"])
    image, html = rows["image"].sha256, rows["html"].sha256

    with db.session() as session:
        row = session.scalars(
            select(Artifact).where(Artifact.snapshot_id == snapshot["id"], Artifact.role == "image")
        ).one()
        row.sha256 = html  # the row now names other stored bytes
    body = live_api.get(f"{path}/verify.json").json()
    assert body["manifest"] == "invalid" and "image" in body["reason"]
    checks = {a["role"]: a["check"] for a in body["artifacts"]}
    assert checks["image"] == "differs" and checks["html"] == "matches"
    page = live_api.get(f"{path}/verify").text
    assert "verdict-invalid" in page and "DIFFERS from the signed manifest" in page

    with db.session() as session:
        row = session.scalars(
            select(Artifact).where(Artifact.snapshot_id == snapshot["id"], Artifact.role == "image")
        ).one()
        row.sha256 = "0" * 64  # names bytes the store does not have
    body = live_api.get(f"{path}/verify.json").json()
    assert body["manifest"] == "invalid" and "missing" in body["reason"]
    assert {a["role"]: a["check"] for a in body["artifacts"]}["image"] == "missing"

    with db.session() as session:
        row = session.scalars(
            select(Artifact).where(Artifact.snapshot_id == snapshot["id"], Artifact.role == "image")
        ).one()
        row.sha256 = image
    assert live_api.get(f"{path}/verify.json").json()["manifest"] == "valid"

    with blobs.open(rows["manifest"].sha256) as stream:
        document = json.loads(stream.read())
    document["manifest"]["snapshot"]["url"] = "https://elsewhere.example/"
    forged = json.dumps(document, indent=2, sort_keys=True).encode()
    with db.session() as session:
        row = session.scalars(
            select(Artifact).where(
                Artifact.snapshot_id == snapshot["id"], Artifact.role == "manifest"
            )
        ).one()
        row.sha256, row.size = blobs.put(forged), len(forged)
    body = live_api.get(f"{path}/verify.json").json()
    assert body["manifest"] == "invalid" and "signature" in body["reason"]
    assert body["manifest_sha256"] == hashlib.sha256(forged).hexdigest()
    (token,) = body["timestamps"]
    assert not token["valid"] and not token["over_manifest"]
    page = live_api.get(f"{path}/verify").text
    assert "verdict-invalid" in page and "INVALID" in page


def test_verify_and_bundle_follow_the_link_rules(
    live_api: TestClient,
    auth: dict[str, str],
    pages: PageServer,
    db: Database,
) -> None:
    snapshot = stamped_capture(live_api, auth, pages.url + "/")
    plain = share(live_api, auth, snapshot["id"])
    assert plain["evidence"] is False and plain["replay"] is False
    path = f"/s/{plain['id']}"
    assert live_api.get(f"{path}/verify").status_code == 200
    assert "does not offer the evidence bundle" in live_api.get(f"{path}/verify").text
    assert live_api.get(f"{path}/verify.json").json()["bundle_url"] is None
    assert f"{plain['url']}/bundle" not in live_api.get(path).text
    refused = live_api.get(f"{path}/bundle")
    assert refused.status_code == 404 == live_api.get(f"{path}/nothing").status_code

    revoked = share(live_api, auth, snapshot["id"], evidence=True)
    assert live_api.delete(f"/api/v1/shares/{revoked['id']}", headers=auth).status_code == 204
    expired = share(live_api, auth, snapshot["id"], evidence=True)
    with db.session() as session:
        row = session.get(Share, expired["id"])
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
    private = share(live_api, auth, snapshot["id"], public=False, evidence=True)
    for link, status in ((revoked, 410), (expired, 404), (private, 404), ({"id": "x" * 43}, 404)):
        base = f"/s/{link['id']}"
        assert live_api.get(base).status_code == status
        for suffix in ("/verify", "/bundle"):
            answer = live_api.get(base + suffix)
            assert answer.status_code == status, suffix
            assert f"HTTP {status}" in answer.text and answer.headers["cache-control"] == "no-store"
        answer = live_api.get(f"{base}/verify.json")
        assert answer.status_code == status
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["status"] == status
    member = live_api.get(f"/s/{private['id']}/verify.json", headers=auth)
    assert member.status_code == 200 and member.json()["manifest"] == "valid"
    assert live_api.get(f"/s/{private['id']}/bundle", headers=auth).status_code == 200


def test_a_test_snapshot_without_a_manifest_says_what_there_is(
    live_api: TestClient, auth: dict[str, str], db: Database
) -> None:
    agent_id = agents.Agents(db).register("probe-host-1", location="Local", country_id="").id
    body = {
        "testName": "Shop home",
        "url": "https://shop.example/",
        "interval": 300,
        "agents": [{"agentId": str(agent_id)}],
    }
    created = live_api.post("/v7/tests/http-server", headers=auth, json=body)
    assert created.status_code == 201, created.text
    end = utcnow()
    frozen = live_api.post(
        f"/v7/tests/{created.json()['testId']}/snapshot",
        headers=auth,
        json={
            "displayName": "Outage window",
            "startDate": (end - timedelta(hours=1)).isoformat(),
            "endDate": end.isoformat(),
            "isPublic": True,
        },
    )
    assert frozen.status_code == 201, frozen.text
    assert "evidence" not in frozen.json() and "replay" not in frozen.json()
    path = f"/s/{frozen.json()['id']}"
    body = live_api.get(f"{path}/verify.json").json()
    assert body["manifest"] == "none" and body["kind"] == "test_window"
    assert body["timestamps"] == [] and body["bundle_url"] is None
    ((role, check),) = [(a["role"], a["check"]) for a in body["artifacts"]]
    assert (role, check) == ("image", "unsigned")
    with db.session() as session:
        image = session.scalars(
            select(Artifact).where(
                Artifact.snapshot_id == body["snapshot_id"], Artifact.role == "image"
            )
        ).one()
    assert body["artifacts"][0]["sha256"] == image.sha256
    page = live_api.get(f"{path}/verify")
    assert page.status_code == 200 and "no manifest" in page.text
    assert "test snapshots have no signed manifest" in page.text and image.sha256 in page.text
    assert live_api.get(f"{path}/bundle").status_code == 404


def test_share_switches_are_strict_booleans(
    live_api: TestClient, auth: dict[str, str], pages: PageServer
) -> None:
    created = live_api.post("/api/v1/snapshots", headers=auth, json={"url": pages.url + "/"})
    snapshot_id = created.json()["id"]
    both = share(live_api, auth, snapshot_id, evidence=True, replay=True)
    assert both["evidence"] is True and both["replay"] is True
    listed = live_api.get(f"/api/v1/snapshots/{snapshot_id}/shares", headers=auth).json()
    assert [(each["evidence"], each["replay"]) for each in listed["items"]] == [(True, True)]
    for bad in ({"evidence": "yes"}, {"replay": 1}):
        refused = live_api.post(f"/api/v1/snapshots/{snapshot_id}/shares", headers=auth, json=bad)
        assert refused.status_code == 400, refused.text
        assert refused.headers["content-type"] == "application/problem+json"


def test_a_verdict_is_reused_for_a_while_then_checked_again(
    live_api: TestClient,
    auth: dict[str, str],
    pages: PageServer,
    blobs: FileBlobStore,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    snapshot = stamped_capture(live_api, auth, pages.url + "/")
    path = f"/s/{share(live_api, auth, snapshot['id'])['id']}"
    assert live_api.get(f"{path}/verify.json").json()["manifest"] == "valid"

    # The stored DOM's bytes change under the same digest: a visit within the window is answered
    # from the verdict already reached, without reading the archive again.
    digest = stored(db, snapshot["id"])["html"].sha256
    blobs._path(digest).write_bytes(b"<html>changed on disk</html>")
    assert live_api.get(f"{path}/verify.json").json()["manifest"] == "valid"

    monkeypatch.setattr("snapshotd.services.verification.RECHECK_SECONDS", 0.0)
    body = live_api.get(f"{path}/verify.json").json()
    assert body["manifest"] == "invalid"
    assert {a["role"]: a["check"] for a in body["artifacts"]}["html"] == "differs"


def test_a_bundle_names_the_dom_html_and_still_reads_older_names(
    live_api: TestClient, auth: dict[str, str], pages: PageServer, tsa: LocalTsa
) -> None:
    snapshot = stamped_capture(live_api, auth, pages.url + "/")
    bundle = live_api.get(f"/api/v1/snapshots/{snapshot['id']}/bundle", headers=auth).content
    files = members(bundle)
    assert "html.html" in files and "html.bin" not in files
    verdict = manifests.verify_bundle(bundle)
    assert verdict.ok and "html.html: SHA-256 matches" in verdict.lines, verdict.lines
    # Bundles downloaded before held the DOM as `html.bin`; they verify as they did.
    older = io.BytesIO()
    with zipfile.ZipFile(older, "w") as archive:
        for name, data in files.items():
            archive.writestr("html.bin" if name == "html.html" else name, data)
    verdict = manifests.verify_bundle(older.getvalue())
    assert verdict.ok and "html.bin: SHA-256 matches" in verdict.lines, verdict.lines
