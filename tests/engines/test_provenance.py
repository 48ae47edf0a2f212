"""A capture's provenance in real Chromium: the HAR of every exchange the page server saw, the
https origin's certificate chain, and the DNS answers of the capture's own guard lane."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from warcio.archiveiterator import ArchiveIterator

from snapshotd.config import Settings
from snapshotd.engines import browser, har
from snapshotd.engines.capture import CaptureOptions, CaptureResult, Cookie
from snapshotd.engines.stack import capture_stack
from tests.certs import ServerCertificate, self_signed
from tests.pages import PageServer, routes

SECURE_HOST = "secure.provenance.test"
REQUIRED_ENTRY = {"startedDateTime", "time", "request", "response", "cache", "timings"}
REQUIRED_REQUEST = {
    "method",
    "url",
    "httpVersion",
    "headers",
    "queryString",
    "cookies",
    "headersSize",
    "bodySize",
}
REQUIRED_RESPONSE = {
    "status",
    "statusText",
    "httpVersion",
    "headers",
    "cookies",
    "content",
    "redirectURL",
    "headersSize",
    "bodySize",
}


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> ServerCertificate:
    return self_signed(tmp_path_factory.mktemp("tls"), (SECURE_HOST,), ("127.0.0.1",))


@pytest.fixture(scope="module")
def secure(certificate: ServerCertificate) -> Iterator[PageServer]:
    with PageServer("127.0.0.1", tls=certificate.context) as server:
        yield server


@pytest.fixture
def trusting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chromium accepts the test's self-signed certificate (it still reports the chain)."""
    monkeypatch.setattr(browser, "BASE_ARGS", [*browser.BASE_ARGS, "--ignore-certificate-errors"])


def capture(settings: Settings, options: CaptureOptions) -> CaptureResult:
    async def scenario() -> CaptureResult:
        async with capture_stack(settings, slots=1, hosts={SECURE_HOST: "127.0.0.1"}) as stack:
            return await stack.engine.capture(options)

    return asyncio.run(scenario())


def artifact(result: CaptureResult, role: str) -> bytes:
    return next(each.data for each in result.artifacts if each.role == role)


def entries(result: CaptureResult) -> list[dict[str, Any]]:
    log = json.loads(artifact(result, "har"))["log"]
    assert log["version"] == "1.2" and log["creator"]["name"] == "snapshotd"
    assert [page["id"] for page in log["pages"]] == ["page_1"]
    found: list[dict[str, Any]] = log["entries"]
    return found


def test_the_har_has_one_entry_per_exchange_the_server_saw_redirects_included(
    settings: Settings, pages: PageServer
) -> None:
    target = f"{pages.url}/parts"
    pages.hits.clear()
    result = capture(
        settings,
        CaptureOptions(
            url=f"{pages.url}/redirect?to={target}",
            wait_until="networkidle",
            headers={"X-Api-Key": "hush-hush"},
            cookies=(Cookie("session", "s3cret"),),
        ),
    )
    logged = entries(result)
    seen = sorted((method, path) for method, path, *_ in pages.hits)
    assert sorted((e["request"]["method"], urlsplit(e["request"]["url"]).path) for e in logged) == (
        seen
    )
    assert len(seen) == 5  # the redirect, the page, its image, its stylesheet and its fetch

    hop, landing = logged[0], logged[1]
    assert hop["response"]["status"] == 302 and hop["response"]["redirectURL"] == target
    assert landing["request"]["url"] == target and landing["response"]["status"] == 200
    assert landing["response"]["cookies"] == [
        {"name": "visit", "value": "1", "path": "/", "httpOnly": True}
    ]
    assert landing["response"]["content"]["mimeType"] == "text/html"
    posted = next(e for e in logged if e["request"]["method"] == "POST")
    assert posted["request"]["bodySize"] == 4
    assert posted["request"]["queryString"] == [{"name": "from", "value": "page"}]
    for entry in logged:
        assert set(entry) >= REQUIRED_ENTRY and entry["pageref"] == "page_1"
        assert set(entry["request"]) >= REQUIRED_REQUEST
        assert set(entry["response"]) >= REQUIRED_RESPONSE
        assert entry["response"]["httpVersion"] == "HTTP/1.0"
        assert entry["startedDateTime"].endswith("Z")
        timings = entry["timings"]
        assert all(timings[phase] >= 0 for phase in ("send", "wait", "receive"))
        counted = sum(v for k, v in timings.items() if k != "ssl" and v > 0)
        assert entry["time"] == pytest.approx(counted, abs=0.01)
        assert entry["serverIPAddress"] == "127.0.0.1"
        # What the capture request sent (credentials, often) never reaches the log.
        headers = {h["name"].lower(): h["value"] for h in entry["request"]["headers"]}
        assert headers["x-api-key"] == har.REDACTED
        assert {"name": "session", "value": har.REDACTED} in entry["request"]["cookies"]
    # The real headers, as they went over the wire, and the sizes the server sent.
    assert "hush-hush" not in artifact(result, "har").decode()
    served = landing["response"]
    assert (
        served["bodySize"]
        == served["content"]["size"]
        == int(next(h["value"] for h in served["headers"] if h["name"].lower() == "content-length"))
    )

    provenance = result.metadata["provenance"]
    assert provenance["har"] == {"entries": 5, "omitted": 0}
    assert provenance["dns"] == {"127.0.0.1": {"answers": ["127.0.0.1"], "used": ["127.0.0.1"]}}
    assert provenance["options"]["headers"] == ["X-Api-Key"]
    assert provenance["options"]["cookies"][0]["name"] == "session"
    assert "s3cret" not in json.dumps(result.metadata)
    assert "certificate_chain" not in provenance  # http has none
    assert {each.role for each in result.artifacts} == {"image", "html", "har", "wacz"}


def test_the_certificate_chain_and_dns_answers_of_an_https_page(
    settings: Settings, secure: PageServer, certificate: ServerCertificate, trusting: None
) -> None:
    port = urlsplit(secure.url).port
    result = capture(settings, CaptureOptions(url=f"https://{SECURE_HOST}:{port}/"))
    assert result.metadata["http_status"] == 200

    chain = x509.load_pem_x509_certificates(artifact(result, "certificate_chain"))
    assert chain[0].public_bytes(serialization.Encoding.DER) == certificate.der
    described = result.metadata["provenance"]["certificate_chain"]
    assert described["origin"] == f"https://{SECURE_HOST}:{port}"
    assert described["certificates"][0]["sha256"] == hashlib.sha256(certificate.der).hexdigest()
    assert described["certificates"][0]["subject"] == f"CN={SECURE_HOST}"

    dns = result.metadata["provenance"]["dns"]
    assert dns == {SECURE_HOST: {"answers": ["127.0.0.1"], "used": ["127.0.0.1"]}}
    (entry,) = entries(result)
    assert entry["serverIPAddress"] == "127.0.0.1"
    assert entry["timings"]["ssl"] >= 0 and entry["timings"]["connect"] >= entry["timings"]["ssl"]
    media = {each.role: each.media_type for each in result.artifacts}
    assert media["certificate_chain"] == "application/x-pem-file"
    assert media["har"] == "application/json"

    # The web archive holds the https exchange the guard only tunnelled, body and all.
    warc = zipfile.ZipFile(io.BytesIO(artifact(result, "wacz"))).read("archive/data.warc.gz")
    answered = {
        record.rec_headers["WARC-Target-URI"]: (record, record.content_stream().read())
        for record in ArchiveIterator(io.BytesIO(warc))
        if record.rec_type == "response"
    }
    page, body = answered[f"https://{SECURE_HOST}:{port}/"]
    assert body == routes({}, "")["/"][2]
    assert page.rec_headers["WARC-IP-Address"] == "127.0.0.1"


def test_the_log_is_bounded_and_says_what_it_left_out(
    settings: Settings, pages: PageServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(har, "ENTRY_LIMIT", 2)
    pages.hits.clear()
    result = capture(settings, CaptureOptions(url=f"{pages.url}/parts", wait_until="networkidle"))
    log = json.loads(artifact(result, "har"))["log"]
    assert len(log["entries"]) == 2
    assert log["omitted"] == len(pages.hits) - 2 > 0
    assert str(log["omitted"]) in log["comment"]
    assert result.metadata["provenance"]["har"] == {"entries": 2, "omitted": log["omitted"]}
    # The web archive holds the same exchanges, so it is bounded alike.
    assert result.metadata["archive"]["exchanges_left_out"] == log["omitted"]
    assert result.metadata["archive"]["entries"] <= 2


def test_without_evidence_there_is_no_har_and_no_provenance(
    settings: Settings, pages: PageServer, tmp_path: Path
) -> None:
    result = capture(settings, CaptureOptions(url=f"{pages.url}/", evidence=False))
    assert [each.role for each in result.artifacts] == ["image"]
    assert "provenance" not in result.metadata
