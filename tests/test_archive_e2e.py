"""The web archive through the native API with an in-process worker and real Chromium: the WACZ is
stored, served as a download, listed in the signed manifest, bundled, and checked by
`snapshotd verify`; py-wacz validates the copy the bundle carries."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import zipfile
from pathlib import Path

from fastapi.testclient import TestClient

from tests.engines.test_archive import tool
from tests.pages import PageServer
from tests.test_capture_e2e import create, wait
from tests.test_manifests import rewrite, verify


def test_the_wacz_is_signed_bundled_and_verified(
    live_api: TestClient, auth: dict[str, str], pages: PageServer, tmp_path: Path
) -> None:
    created = create(live_api, auth, url=f"{pages.url}/archived", wait_until="networkidle")
    done = wait(live_api, auth, created["id"])
    assert done["status"] == "success", done["status_message"]
    listed = {a["role"]: a for a in done["artifacts"]}
    assert listed["wacz"]["media_type"] == "application/zip"
    summary = done["metadata"]["archive"]
    assert summary["entries"] == 7 and summary["omitted"] == 0

    download = live_api.get(f"/api/v1/snapshots/{created['id']}/wacz", headers=auth)
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(download.content)).namelist()
    assert "archive/data.warc.gz" in names and "indexes/index.cdx" in names

    manifest = json.loads(
        live_api.get(f"/api/v1/snapshots/{created['id']}/manifest", headers=auth).content
    )["manifest"]
    signed = {a["role"]: a["sha256"] for a in manifest["artifacts"]}
    assert signed["wacz"] == hashlib.sha256(download.content).hexdigest()
    assert manifest["metadata"]["archive"] == summary

    bundle = live_api.get(f"/api/v1/snapshots/{created['id']}/bundle", headers=auth).content
    bundled = zipfile.ZipFile(io.BytesIO(bundle))
    assert bundled.read("wacz.wacz") == download.content
    (tmp_path / "copy.wacz").write_bytes(bundled.read("wacz.wacz"))
    checked = subprocess.run(
        [tool("wacz"), "validate", "-f", tmp_path / "copy.wacz"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

    pem = live_api.get("/.well-known/snapshotd-manifest-key").json()["pem"]
    verified = verify(tmp_path, bundle, pem)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "wacz.wacz: SHA-256 matches" in verified.stdout
    tampered = bytearray(download.content)
    tampered[len(tampered) // 2] ^= 0xFF
    altered = verify(tmp_path, rewrite(bundle, "wacz.wacz", bytes(tampered)), pem)
    assert altered.returncode == 1 and "wacz.wacz: SHA-256" in altered.stdout
