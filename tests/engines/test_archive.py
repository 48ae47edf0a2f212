"""A capture's web archive (WACZ) in real Chromium: every exchange the page server saw is in the
WARC with the body it sent, the index is what cdxj-indexer writes for it, py-wacz validates it,
and the size limit leaves bodies out and says so."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import subprocess
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from warcio.archiveiterator import ArchiveIterator

from snapshotd.config import Settings
from snapshotd.engines import wacz
from snapshotd.engines.capture import CaptureOptions, CaptureResult
from snapshotd.engines.stack import capture_stack
from tests.pages import ARCHIVED_BIG, PageServer, routes

TOOLS = Path(__file__).resolve().parents[2] / ".venv-wacz" / "bin"


def tool(name: str) -> Path:
    path = TOOLS / name
    assert path.exists(), f"{path} is missing: `make deps` installs py-wacz in .venv-wacz"
    return path


def capture(settings: Settings, options: CaptureOptions) -> CaptureResult:
    async def scenario() -> CaptureResult:
        async with capture_stack(settings, slots=1) as stack:
            return await stack.engine.capture(options)

    return asyncio.run(scenario())


def archived(settings: Settings, pages: PageServer) -> CaptureResult:
    pages.hits.clear()
    target = f"{pages.url}/archived"
    return capture(
        settings,
        CaptureOptions(
            url=f"{pages.url}/redirect?to={target}",
            wait_until="networkidle",
            headers={"X-Api-Key": "hush-hush"},
        ),
    )


def the_wacz(result: CaptureResult) -> bytes:
    found = [each for each in result.artifacts if each.role == "wacz"]
    assert len(found) == 1 and found[0].media_type == "application/zip"
    return found[0].data


def responses(warc: bytes) -> dict[str, list[Any]]:
    """Each target URL's (response record, body, request record, request body), in order."""
    found: dict[str, list[Any]] = {}
    pending: dict[str, Any] = {}
    for record in ArchiveIterator(io.BytesIO(warc)):
        if record.rec_type == "response":
            pending[record.rec_headers["WARC-Record-ID"]] = (record, record.content_stream().read())
        elif record.rec_type == "request":
            response, body = pending.pop(record.rec_headers["WARC-Concurrent-To"])
            url = record.rec_headers["WARC-Target-URI"]
            assert url == response.rec_headers["WARC-Target-URI"]
            found.setdefault(url, []).append(
                (response, body, record, record.content_stream().read())
            )
    assert not pending, "every response has its request"
    return found


def served(pages: PageServer, path: str, query: str) -> bytes:
    """The body the page server sent for a request, decoded as the page saw it."""
    status, headers, content = routes(parse_qs(query), pages.canary)[path]
    return gzip.decompress(content) if headers.get("content-encoding") == "gzip" else content


def test_the_wacz_holds_every_exchange_with_its_body_and_validates(
    settings: Settings, pages: PageServer, tmp_path: Path
) -> None:
    result = archived(settings, pages)
    data = the_wacz(result)
    path = tmp_path / "capture.wacz"
    path.write_bytes(data)
    checked = subprocess.run(
        [tool("wacz"), "validate", "-f", path], capture_output=True, text=True, timeout=120
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Validation succeeded" in checked.stdout

    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.getinfo("archive/data.warc.gz").compress_type == zipfile.ZIP_STORED
    warc = archive.read("archive/data.warc.gz")
    index = archive.read("indexes/index.cdx").decode()
    package = json.loads(archive.read("datapackage.json"))
    assert package["wacz_version"] == "1.1.1" and package["profile"] == "data-package"
    assert package["mainPageURL"] == f"{pages.url}/archived"
    digest = json.loads(archive.read("datapackage-digest.json"))
    assert digest["path"] == "datapackage.json"
    header, page = [json.loads(line) for line in archive.read("pages/pages.jsonl").splitlines()]
    assert header == {"format": "json-pages-1.0", "id": "pages", "title": "All Pages"}
    assert page["url"] == f"{pages.url}/archived" and page["ts"].endswith("Z")

    # The index is exactly what the reference indexer writes for this WARC, as py-wacz runs it.
    (tmp_path / "data.warc.gz").write_bytes(warc)
    reference = subprocess.run(
        [tool("cdxj-indexer"), "--post-append", "--sort", tmp_path / "data.warc.gz"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert index == reference.stdout
    lines = [line.split(" ", 2) for line in index.splitlines()]
    assert all(len(stamp) == 14 and stamp.isdigit() for _, stamp, _ in lines)
    indexed = {json.loads(entry)["url"] for _, _, entry in lines}

    records = responses(warc)
    assert len(pages.hits) == 8  # two redirects, the page, css, image, two fetches and a POST
    archived_requests = sorted(
        (request.http_headers.protocol, urlsplit(url).path, request_body)
        for url, each in records.items()
        for _, _, request, request_body in each
    )
    assert archived_requests == sorted((m, p, body) for m, p, _, body in pages.hits)
    for url, each in records.items():
        assert url in indexed
        [(response, body, request, _)] = each
        parts = urlsplit(url)
        assert body == served(pages, parts.path, parts.query), url
        http = response.http_headers
        assert http.get_header("Content-Length") == str(len(body))
        assert http.get_header("Content-Encoding") is None
        assert response.rec_headers["WARC-Truncated"] is None
        assert response.rec_headers["WARC-IP-Address"] == "127.0.0.1"
        # What the capture request itself sent (credentials, often) stays out of the archive.
        assert request.http_headers.get_header("X-Api-Key") == "REDACTED"

    style = records[f"{pages.url}/archive/style.css"][0][0].http_headers
    assert style.get_header("X-Archive-Orig-Content-Encoding") == "gzip"
    hop = records[f"{pages.url}/redirect?to={pages.url}/archived"][0]
    assert hop[0].http_headers.get_statuscode() == "302" and hop[1] == b""
    posted = next(json.loads(e) for _, _, e in lines if "POST" in e)
    assert posted["requestBody"] == "a=1&b=two"

    assert "hush-hush" not in warc.decode("latin-1") + gzip.decompress(warc).decode("latin-1")
    assert result.metadata["archive"] == {
        "entries": 8,
        "bytes": sum(len(each[0][1]) for each in records.values()),
        "max_bytes": settings.wacz_max_bytes,
        "omitted": 0,
        "exchanges_left_out": 0,
        "omitted_bodies": [],
    }


def test_past_the_size_limit_bodies_are_left_out_and_listed(
    settings: Settings, pages: PageServer, tmp_path: Path
) -> None:
    limited = settings.model_copy(update={"wacz_max_bytes": 16 * 1024})
    result = archived(limited, pages)
    data = the_wacz(result)
    path = tmp_path / "limited.wacz"
    path.write_bytes(data)
    checked = subprocess.run(
        [tool("wacz"), "validate", "-f", path], capture_output=True, text=True, timeout=120
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

    big = f"{pages.url}/archive/big.bin"
    summary = result.metadata["archive"]
    assert len(ARCHIVED_BIG) > summary["max_bytes"] == 16 * 1024
    assert summary["entries"] == 8 and summary["omitted"] == 1
    assert summary["omitted_bodies"] == [{"url": big, "reason": "past the size limit"}]
    assert 0 < summary["bytes"] <= 16 * 1024

    archive = zipfile.ZipFile(io.BytesIO(data))
    records = responses(archive.read("archive/data.warc.gz"))
    response, body, _, _ = records[big][0]
    assert body == b"" and response.rec_headers["WARC-Truncated"] == "length"
    assert response.http_headers.get_header("X-Archive-Orig-Content-Length") == str(
        len(ARCHIVED_BIG)
    )
    page = records[f"{pages.url}/archived"][0]
    assert page[1] == served(pages, "/archived", "")
    notes = json.loads(archive.read("datapackage.json"))["snapshotd"]
    assert notes["omitted"] == 1 and notes["omitted_bodies"][0]["url"] == big
    info = next(ArchiveIterator(io.BytesIO(archive.read("archive/data.warc.gz"))))
    assert info.rec_type == "warcinfo"
    assert b'"omitted":1' in info.content_stream().read()


def test_answers_without_a_body_are_not_listed_as_left_out(
    settings: Settings, pages: PageServer
) -> None:
    # The page never reads either answer, and Chromium reports both fetches as canceled.
    result = capture(
        settings, CaptureOptions(url=f"{pages.url}/bodiless", wait_until="networkidle")
    )
    summary = result.metadata["archive"]
    assert summary["entries"] == 3 and summary["omitted"] == 0, summary
    records = responses(zipfile.ZipFile(io.BytesIO(the_wacz(result))).read("archive/data.warc.gz"))
    for url, status in (
        (f"{pages.url}/no-content", "204"),
        (f"{pages.url}/archive/data.json", "200"),
    ):
        [(response, body, request, _)] = records[url]
        assert response.http_headers.get_statuscode() == status and body == b""
        assert response.rec_headers["WARC-Truncated"] is None
    assert records[f"{pages.url}/archive/data.json"][0][2].http_headers.protocol == "HEAD"


def test_no_evidence_no_archive(settings: Settings, pages: PageServer) -> None:
    result = capture(settings, CaptureOptions(url=f"{pages.url}/archived", evidence=False))
    assert {each.role for each in result.artifacts} == {"image"}
    assert "archive" not in result.metadata


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("application/x-www-form-urlencoded", b"a=1&b=two+words", "a=1&b=two words"),
        ("application/json", b'{"a": 1, "b": {"a": [2, 3]}}', "a=1&a.2_=2&a.3_=3"),
        ("application/json", b"not json", ""),
        ("text/plain", b"\x00\x01", "__wb_post_data=AAE="),
        ("application/octet-stream", b"\xff", "__wb_post_data=/w=="),
    ],
)
def test_a_post_is_indexed_by_its_body_as_cdxj_indexer_does(
    content_type: str, body: bytes, expected: str, tmp_path: Path
) -> None:
    record = wacz.Record(
        url="http://example.test/submit",
        method="POST",
        request_headers={"Content-Type": content_type, "Content-Length": str(len(body))},
        request_body=body,
        protocol="http/1.1",
        status=200,
        reason="OK",
        response_headers={"Content-Type": "text/plain"},
        body=b"thanks",
        wall_time=1_700_000_000.5,
    )
    data = wacz.write_wacz(
        [record], wacz.Page(record.url, "t", record.wall_time), software="test", notes={}
    )
    archive = zipfile.ZipFile(io.BytesIO(data))
    (tmp_path / "data.warc.gz").write_bytes(archive.read("archive/data.warc.gz"))
    reference = subprocess.run(
        [tool("cdxj-indexer"), "--post-append", "--sort", tmp_path / "data.warc.gz"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    index = archive.read("indexes/index.cdx").decode()
    assert index == reference.stdout
    assert json.loads(index.split(" ", 2)[2])["requestBody"] == expected
