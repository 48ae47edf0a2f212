"""Provenance through the native API with an in-process worker and real Chromium: an https page's
HAR and certificate chain are stored, listed in the signed manifest, served by the artifact routes,
bundled, and checked by `snapshotd verify`."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient

from snapshotd.engines import browser
from tests.certs import ServerCertificate, self_signed
from tests.pages import PageServer
from tests.test_capture_e2e import create, wait
from tests.test_manifests import rewrite, verify


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> ServerCertificate:
    return self_signed(tmp_path_factory.mktemp("tls"), (), ("127.0.0.1",))


@pytest.fixture(scope="module")
def secure(certificate: ServerCertificate) -> Iterator[PageServer]:
    with PageServer("127.0.0.1", tls=certificate.context) as server:
        yield server


@pytest.fixture
def trusting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chromium accepts the test's self-signed certificate (it still reports the chain)."""
    monkeypatch.setattr(browser, "BASE_ARGS", [*browser.BASE_ARGS, "--ignore-certificate-errors"])


def test_an_https_capture_keeps_its_har_and_chain_in_the_manifest_and_bundle(
    trusting: None,
    live_api: TestClient,
    auth: dict[str, str],
    secure: PageServer,
    certificate: ServerCertificate,
    tmp_path: Path,
) -> None:
    created = create(live_api, auth, url=secure.url + "/parts", wait_until="networkidle")
    done = wait(live_api, auth, created["id"])
    assert done["status"] == "success", done["status_message"]
    artifacts = {a["role"]: a for a in done["artifacts"]}
    assert set(artifacts) == {
        "image",
        "html",
        "har",
        "certificate_chain",
        "wacz",
        "manifest",
    }
    provenance = done["metadata"]["provenance"]
    assert provenance["dns"] == {"127.0.0.1": {"answers": ["127.0.0.1"], "used": ["127.0.0.1"]}}
    assert provenance["options"]["url"] == secure.url + "/parts"

    log = live_api.get(f"/api/v1/snapshots/{created['id']}/har", headers=auth)
    assert log.status_code == 200 and log.headers["content-type"] == "application/json"
    assert len(json.loads(log.content)["log"]["entries"]) == provenance["har"]["entries"] == 4
    chain = live_api.get(f"/api/v1/snapshots/{created['id']}/certificate_chain", headers=auth)
    assert chain.headers["content-type"] == "application/x-pem-file"
    leaf = x509.load_pem_x509_certificates(chain.content)[0]
    assert leaf.public_bytes(serialization.Encoding.DER) == certificate.der

    manifest = json.loads(
        live_api.get(f"/api/v1/snapshots/{created['id']}/manifest", headers=auth).content
    )["manifest"]
    listed = {a["role"]: a["sha256"] for a in manifest["artifacts"]}
    assert listed["har"] == hashlib.sha256(log.content).hexdigest()
    assert listed["certificate_chain"] == hashlib.sha256(chain.content).hexdigest()
    assert manifest["metadata"]["provenance"] == provenance

    bundle = live_api.get(f"/api/v1/snapshots/{created['id']}/bundle", headers=auth).content
    names = set(zipfile.ZipFile(io.BytesIO(bundle)).namelist())
    assert {"har.json", "certificate_chain.pem"} <= names
    pem = live_api.get("/.well-known/snapshotd-manifest-key").json()["pem"]
    checked = verify(tmp_path, bundle, pem)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "har.json: SHA-256 matches" in checked.stdout
    assert "certificate_chain.pem: SHA-256 matches" in checked.stdout
    altered = verify(tmp_path, rewrite(bundle, "har.json", b'{"log": {"entries": []}}'), pem)
    assert altered.returncode == 1 and "har.json: SHA-256" in altered.stdout
