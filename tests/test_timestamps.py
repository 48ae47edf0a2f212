"""Trusted timestamps end to end, against a real RFC 3161 TSA on loopback (tests/tsa.py): every
capture's manifest is stamped after the capture, the bundle verifies offline with `snapshotd
verify` (and `openssl ts -verify`), any swapped or changed part is caught, and a TSA that is down
delays only the token, never the capture."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import select

from snapshotd.config import Settings
from snapshotd.engines import timestamping
from snapshotd.services.evidence import evidence_facts
from snapshotd.store.db import Database
from snapshotd.store.models import Job, Location, Snapshot
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


def capture(client: TestClient, auth: dict[str, str], url: str) -> str:
    response = client.post("/api/v1/snapshots", headers=auth, json={"url": url})
    assert response.status_code == 202, response.text
    snapshot_id: str = response.json()["id"]
    return snapshot_id


def wait(
    client: TestClient, auth: dict[str, str], snapshot_id: str, stamp: str, limit: float = 60
) -> dict[str, Any]:
    """The snapshot once it succeeded and its `metadata.timestamp` is `stamp`."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(f"/api/v1/snapshots/{snapshot_id}", headers=auth).json()
        assert body["status"] != "failed", body
        if body["status"] == "success" and body["metadata"].get("timestamp") == stamp:
            return body
        time.sleep(0.1)
    raise AssertionError(f"snapshot {snapshot_id} is not {stamp}: {body}")


def verify(tmp_path: Path, bundle: bytes, *options: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "bundle.zip"
    path.write_bytes(bundle)
    args = [sys.executable, "-m", "snapshotd", "verify", str(path), *options]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def rewrite(bundle: bytes, name: str, data: bytes) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(bundle))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for item in source.namelist():
            target.writestr(item, data if item == name else source.read(item))
    return out.getvalue()


def token_from(tsa: LocalTsa, data: bytes) -> bytes:
    async def ask() -> bytes:
        async with httpx.AsyncClient() as client:
            reply, _ = await timestamping.request(client, tsa.url, data, None)
            return reply

    return asyncio.run(ask())


def test_a_stamped_bundle_verifies_offline_and_every_swap_is_caught(
    live_api: TestClient, auth: dict[str, str], pages: PageServer, tsa: LocalTsa, tmp_path: Path
) -> None:
    snapshot_id = capture(live_api, auth, pages.url + "/")
    done = wait(live_api, auth, snapshot_id, "stamped")
    (entry,) = done["metadata"]["timestamps"]
    assert entry["tsa"] == "Test TSA" and entry["tsa_url"] == tsa.url
    assert entry["file"] == "timestamp.tsr"
    reply = live_api.get(f"/api/v1/snapshots/{snapshot_id}/timestamp", headers=auth)
    assert reply.headers["content-type"] == timestamping.MEDIA_TYPE
    assert hashlib.sha256(reply.content).hexdigest() == entry["sha256"]

    bundle = live_api.get(f"/api/v1/snapshots/{snapshot_id}/bundle", headers=auth).content
    archive = zipfile.ZipFile(io.BytesIO(bundle))
    assert {"manifest.json", "timestamp.tsr", "timestamps.json"} <= set(archive.namelist())
    manifest = archive.read("manifest.json")
    companion = json.loads(archive.read("timestamps.json"))
    assert companion["manifest_sha256"] == hashlib.sha256(manifest).hexdigest()
    assert "timestamp" not in json.loads(manifest)["manifest"]["metadata"]

    key = tmp_path / "key.pem"
    key.write_text(live_api.get("/.well-known/snapshotd-manifest-key").json()["pem"])
    trusted = ("--key", str(key), "--tsa-ca", str(tsa.ca))
    good = verify(tmp_path, bundle, *trusted)
    assert good.returncode == 0, good.stdout + good.stderr
    assert f"timestamp.tsr: valid, timestamped by Test TSA at {entry['time']}" in good.stdout
    # Without the CA the token is still checked, against the certificates it carries.
    assert verify(tmp_path, bundle, "--key", str(key)).returncode == 0

    # openssl reads the same token, with nothing from snapshotd.
    token = tmp_path / "timestamp.tsr"
    token.write_bytes(archive.read("timestamp.tsr"))
    openssl = subprocess.run(
        ["openssl", "ts", "-verify", "-in", str(token), "-digest", companion["manifest_sha256"]]
        + ["-CAfile", str(tsa.ca)],
        capture_output=True,
        text=True,
    )
    assert "Verification: OK" in openssl.stdout, openssl.stdout + openssl.stderr

    document = json.loads(manifest)
    document["manifest"]["snapshot"]["url"] = "https://elsewhere.example/"
    changed = verify(tmp_path, rewrite(bundle, "manifest.json", json.dumps(document).encode()))
    assert changed.returncode == 1
    assert "timestamp.tsr: INVALID — the token is over another digest" in changed.stdout

    with LocalTsa("Other TSA") as other:
        foreign = rewrite(bundle, "timestamp.tsr", token_from(other, manifest))
    swapped = verify(tmp_path, foreign, *trusted)
    assert swapped.returncode == 1
    assert "timestamp.tsr: INVALID — the TSA's signature does not hold" in swapped.stdout
    # Even without the CA, the token is not the one the companion lists.
    unanchored = verify(tmp_path, foreign, "--key", str(key))
    assert unanchored.returncode == 1 and "signed by Other TSA" in unanchored.stdout

    elsewhere = rewrite(bundle, "timestamp.tsr", token_from(tsa, b"another document"))
    other_digest = verify(tmp_path, elsewhere, *trusted)
    assert other_digest.returncode == 1
    assert "timestamp.tsr: INVALID — the token is over another digest" in other_digest.stdout


def test_a_tsa_that_is_down_delays_the_token_not_the_capture(
    live_api: TestClient, auth: dict[str, str], pages: PageServer, tsa: LocalTsa, db: Database
) -> None:
    tsa.stop()
    snapshot_id = capture(live_api, auth, pages.url + "/")
    pending = wait(live_api, auth, snapshot_id, "pending")
    assert "timestamps" not in pending["metadata"]

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with db.session() as session:
            job = session.scalars(select(Job).where(Job.kind == "timestamp")).one()
            if job.attempts >= 1 and job.state == "queued":
                break
        time.sleep(0.1)
    assert job.state == "queued" and tsa.url in (job.error or ""), job.error

    tsa.start()
    stamped = wait(live_api, auth, snapshot_id, "stamped")
    assert stamped["metadata"]["timestamps"][0]["tsa"] == "Test TSA"
    assert stamped["status"] == "success"


def test_timestamps_are_off_by_default(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).tsa_urls == []
    with pytest.raises(ValidationError):
        Settings(data_dir=tmp_path, tsa_urls="ftp://tsa.example/")


def test_the_evidence_record_says_who_stamped_it_and_when() -> None:
    location = Location(name="Checkout", key="checkout")
    stamp = {"tsa": "Test TSA", "time": "2026-12-07T06:30:00Z"}
    snapshot = Snapshot(id="snp_1", meta={"timestamp": "stamped", "timestamps": [stamp]})
    facts = dict(evidence_facts(location, snapshot))
    assert facts["Trusted timestamp"] == "timestamped by Test TSA at 2026-12-07T06:30:00Z"
    snapshot.meta = {"timestamp": "pending"}
    assert "pending" in dict(evidence_facts(location, snapshot))["Trusted timestamp"]


def test_a_manifest_signed_again_is_stamped_again(
    live_api: TestClient, auth: dict[str, str], pages: PageServer, tsa: LocalTsa, tmp_path: Path
) -> None:
    """Change detection adds a diff and signs the manifest again after the capture: the token
    that counts is the one over the final manifest."""
    location = live_api.post(
        "/v1.1/locations",
        headers=auth,
        json={"name": "Terms", "key": "terms", "capture_url": pages.url + "/"},
    ).json()
    lid = location["id"]
    ids = []
    for _ in range(2):
        started = live_api.post(f"/v1.1/locations/{lid}/snapshots/capture", headers=auth)
        ids.append(started.json()["data"]["id"])
        wait(live_api, auth, ids[-1], "stamped")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body = live_api.get(f"/api/v1/snapshots/{ids[1]}", headers=auth).json()
        if "change" in body["metadata"] and body["metadata"].get("timestamp") == "stamped":
            break
        time.sleep(0.1)
    assert "change" in body["metadata"] and body["metadata"]["timestamp"] == "stamped", body
    bundle = live_api.get(f"/api/v1/snapshots/{ids[1]}/bundle", headers=auth).content
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(bundle)).read("manifest.json"))
    assert "diff" in {artifact["role"] for artifact in manifest["manifest"]["artifacts"]}
    done = verify(tmp_path, bundle, "--tsa-ca", str(tsa.ca))
    assert done.returncode == 0, done.stdout + done.stderr


def test_verify_refuses_a_ca_bundle_it_cannot_read(tmp_path: Path) -> None:
    (tmp_path / "not-a-ca.pem").write_text("hello")
    done = verify(tmp_path, b"", "--tsa-ca", str(tmp_path / "not-a-ca.pem"))
    assert done.returncode == 1 and "--tsa-ca" in done.stderr
