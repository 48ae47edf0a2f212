"""Signed manifests end to end: a snapshot's bundle downloaded from the API verifies offline with
`snapshotd verify` against the published key, and any tampering is caught and named."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from PIL import Image

from snapshotd.config import Settings
from snapshotd.services import manifests


def upload_bundle(api: TestClient, auth: dict[str, str]) -> tuple[bytes, str]:
    location = api.post(
        "/v1.1/locations",
        headers=auth,
        json={"name": "App", "key": "app", "application_id": "a", "application_name": "A"},
    ).json()
    picture = io.BytesIO()
    Image.new("RGB", (64, 48), "#aa3300").save(picture, format="PNG")
    uploaded = api.post(
        f"/v1.1/locations/{location['id']}/snapshots/upload",
        headers=auth,
        files={"file": ("shot.png", picture.getvalue(), "image/png")},
    ).json()["data"]
    bundle = api.get(f"/api/v1/snapshots/{uploaded['id']}/bundle", headers=auth)
    assert bundle.status_code == 200 and bundle.headers["content-type"] == "application/zip"
    key = api.get("/.well-known/snapshotd-manifest-key").json()
    return bundle.content, key["pem"]


def verify(tmp_path: Path, bundle: bytes, pem: str | None) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "bundle.zip"
    path.write_bytes(bundle)
    args = [sys.executable, "-m", "snapshotd", "verify", str(path)]
    if pem is not None:
        (tmp_path / "key.pem").write_text(pem)
        args += ["--key", str(tmp_path / "key.pem")]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def rewrite(bundle: bytes, name: str, data: bytes) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(bundle))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for item in source.namelist():
            target.writestr(item, data if item == name else source.read(item))
    return out.getvalue()


def test_a_bundle_verifies_offline_with_the_published_key(
    api: TestClient, auth: dict[str, str], tmp_path: Path, settings: Settings
) -> None:
    bundle, pem = upload_bundle(api, auth)
    names = set(zipfile.ZipFile(io.BytesIO(bundle)).namelist())
    assert names == {"manifest.json", "image.png", "public-key.pem"}
    done = verify(tmp_path, bundle, pem)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "signature: valid" in done.stdout and "image.png: SHA-256 matches" in done.stdout
    # The document /.well-known/snapshotd-manifest-key answers, saved as it is, serves as well.
    published = api.get("/.well-known/snapshotd-manifest-key").text
    assert verify(tmp_path, bundle, published).returncode == 0
    # The key lives in the data folder, readable by the owner only.
    assert manifests.key_path(settings).stat().st_mode & 0o077 == 0


def test_tampering_is_caught_and_named(
    api: TestClient, auth: dict[str, str], tmp_path: Path
) -> None:
    bundle, pem = upload_bundle(api, auth)
    other = io.BytesIO()
    Image.new("RGB", (64, 48), "#00aa33").save(other, format="PNG")
    swapped = verify(tmp_path, rewrite(bundle, "image.png", other.getvalue()), pem)
    assert swapped.returncode == 1
    assert "image.png: SHA-256" in swapped.stdout and "differs" in swapped.stdout

    document = json.loads(zipfile.ZipFile(io.BytesIO(bundle)).read("manifest.json"))
    document["manifest"]["snapshot"]["url"] = "https://forged.example/"
    forged = verify(tmp_path, rewrite(bundle, "manifest.json", json.dumps(document).encode()), pem)
    assert forged.returncode == 1 and "signature: INVALID" in forged.stdout

    stranger = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    pinned = verify(tmp_path, bundle, stranger.decode())
    assert pinned.returncode == 1 and "is not" in pinned.stdout

    unpinned = verify(tmp_path, bundle, None)
    assert unpinned.returncode == 0 and "pass --key" in unpinned.stdout
