"""Writing a capture's exchanges as a WACZ 1.1.1 web archive: WARC/1.1 records in
`archive/data.warc.gz`, their CDXJ index, the page list and the signed-off `datapackage.json`.

Pure work on bytes, with no browser: `engines/archive.py` gathers the exchanges and their bodies
from Chromium and hands them here, in a worker thread.

What a replay tool needs, and what it means for the records:

- Chromium hands over bodies decoded, so a response record carries the decoded body; the
  `Content-Encoding` and `Transfer-Encoding` the server sent are kept as `X-Archive-Orig-…` headers
  (a replay must not decode the body again) and `Content-Length` is the decoded length, with the
  server's own value beside it when it differs.
- A body left out (past the size limit, or one Chromium no longer had) leaves a response record
  with the headers and an empty body, marked `WARC-Truncated` (`length` for the size limit,
  `unspecified` otherwise); the warcinfo record and `datapackage.json` list what was left out.
- Each response is followed by its `request` record, `WARC-Concurrent-To` the response, so an
  indexer pairs them; the index is what `cdxj-indexer --post-append --sort` writes for the WARC
  (a POST or PUT is keyed with its method and body, as replay tools look it up).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import quote, unquote_plus, urlencode, urlsplit

import surt
from warcio.statusandheaders import StatusAndHeaders
from warcio.timeutils import datetime_to_iso_date, iso_date_to_timestamp
from warcio.warcwriter import WARCWriter

__all__ = ["MEDIA_TYPE", "WACZ_VERSION", "WARC_NAME", "Page", "Record", "write_wacz"]

# No media type is registered for WACZ; it is a ZIP, and tools recognise it by its `.wacz` name.
MEDIA_TYPE = "application/zip"
WACZ_VERSION = "1.1.1"
WARC_NAME = "data.warc.gz"
GZIP_LEVEL = 1
WARC_PATH = f"archive/{WARC_NAME}"
INDEX_PATH = "indexes/index.cdx"
PAGES_PATH = "pages/pages.jsonl"
PAGES_HEADER = {"format": "json-pages-1.0", "id": "pages", "title": "All Pages"}

# Headers that describe the body as it travelled, not the decoded body the record holds.
_TRANSPORT = {"content-encoding", "transfer-encoding"}
_MIME_END = re.compile(r"[;\s]")
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~"
# What cdxj-indexer reads of a request body without a Content-Length, and keeps of its query.
_UNSIZED_BODY = 8192
_MAX_QUERY = 4096


@dataclass(frozen=True)
class Record:
    """One exchange as the archive keeps it. `truncated` is the WARC-Truncated reason when the
    body was left out."""

    url: str
    method: str
    request_headers: dict[str, str]  # CDP's shape: repeated headers joined with newlines
    request_body: bytes | None
    protocol: str  # as Chromium names it: "http/1.1", "h2", …
    status: int
    reason: str
    response_headers: dict[str, str]
    body: bytes
    wall_time: float  # seconds since the epoch
    address: str | None = None
    truncated: str | None = None


@dataclass(frozen=True)
class Page:
    url: str
    title: str
    wall_time: float


def write_wacz(records: list[Record], page: Page, *, software: str, notes: dict[str, Any]) -> bytes:
    """The WACZ as bytes. `notes` (what was left out and why) goes into the warcinfo record and
    under `snapshotd` in `datapackage.json`."""
    warc, index = _warc(records, software, notes)
    cdx = "".join(sorted(set(index))).encode()
    when = _iso(page.wall_time)
    pages = (
        PAGES_HEADER,
        {
            "id": uuid.uuid4().hex,
            "url": page.url,
            "ts": when,
            "title": page.title,
        },
    )
    listing = "".join(json.dumps(line) + "\n" for line in pages).encode()
    files = [(WARC_PATH, warc, zipfile.ZIP_STORED), (INDEX_PATH, cdx, zipfile.ZIP_STORED)]
    files.append((PAGES_PATH, listing, zipfile.ZIP_DEFLATED))
    package = {
        "profile": "data-package",
        "wacz_version": WACZ_VERSION,
        "title": page.title or page.url,
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "software": software,
        "mainPageURL": page.url,
        "mainPageDate": when,
        "resources": [
            {
                "name": path.rsplit("/", 1)[-1],
                "path": path,
                "hash": "sha256:" + hashlib.sha256(data).hexdigest(),
                "bytes": len(data),
            }
            for path, data, _ in files
        ],
        "snapshotd": notes,
    }
    described = json.dumps(package, indent=2).encode()
    digest = {"path": "datapackage.json", "hash": "sha256:" + hashlib.sha256(described).hexdigest()}
    files.append(("datapackage.json", described, zipfile.ZIP_DEFLATED))
    files.append(("datapackage-digest.json", json.dumps(digest).encode(), zipfile.ZIP_DEFLATED))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for path, data, method in files:
            archive.writestr(zipfile.ZipInfo(path, _zip_time(page.wall_time)), data, method)
    return out.getvalue()


class _Members:
    """Where warcio writes the records, plain, each then gzipped as a member of its own at
    `GZIP_LEVEL`. warcio's own gzip runs at level 9: on a page's text (its HTML, scripts and
    stylesheets) that takes eight times level 1's time for a fifth smaller archive, and archiving
    runs on every capture."""

    def __init__(self) -> None:
        self.out = io.BytesIO()
        self._record = io.BytesIO()

    def write(self, data: bytes) -> int:
        return self._record.write(data)

    def flush(self) -> None:
        pass

    def seal(self) -> None:
        """Ends the record written since the last seal as one gzip member."""
        packer = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, zlib.MAX_WBITS + 16)
        self.out.write(packer.compress(self._record.getvalue()) + packer.flush())
        self._record = io.BytesIO()

    def tell(self) -> int:
        return self.out.tell()


def _warc(records: list[Record], software: str, notes: dict[str, Any]) -> tuple[bytes, list[str]]:
    out = _Members()
    writer = WARCWriter(out, gzip=False, warc_version="WARC/1.1")
    info = {
        "software": software,
        "format": "WARC File Format 1.1",
        "conformsTo": "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/",
        "snapshotd": json.dumps(notes, separators=(",", ":")),
    }
    writer.write_record(writer.create_warcinfo_record(WARC_NAME, info))
    out.seal()
    index = []
    for record in records:
        moment = datetime.fromtimestamp(record.wall_time, UTC).replace(tzinfo=None)
        date = datetime_to_iso_date(moment, use_micros=True)
        response = _response(writer, record, date)
        request = _request(writer, record, date)
        request.rec_headers.add_header(
            "WARC-Concurrent-To", response.rec_headers.get_header("WARC-Record-ID")
        )
        offset = out.tell()
        writer.write_record(response)
        out.seal()
        length = out.tell() - offset
        writer.write_record(request)
        out.seal()
        index.append(_index_line(record, response.rec_headers, date, offset, length))
    return out.out.getvalue(), index


def _response(writer: WARCWriter, record: Record, date: str) -> Any:
    headers: list[tuple[str, str]] = []
    sent_length = None
    for name, value in _header_pairs(record.response_headers):
        lowered = name.lower()
        if lowered.startswith(":"):
            continue  # HTTP/2's pseudo-headers: the status line says it
        if lowered in _TRANSPORT:
            headers.append((f"X-Archive-Orig-{name}", value))
        elif lowered == "content-length":
            sent_length = value
        else:
            headers.append((name, value))
    length = str(len(record.body))
    if sent_length is not None and sent_length.strip() != length:
        headers.append(("X-Archive-Orig-Content-Length", sent_length))
    headers.append(("Content-Length", length))
    reason = record.reason if record.reason.isascii() else ""
    reason = reason or _phrase(record.status)
    status = StatusAndHeaders(f"{record.status} {reason}", headers, protocol=_protocol(record))
    warc_headers = {"WARC-Date": date}
    if record.address:
        warc_headers["WARC-IP-Address"] = record.address
    if record.truncated:
        warc_headers["WARC-Truncated"] = record.truncated
    return writer.create_warc_record(
        record.url,
        "response",
        payload=io.BytesIO(record.body),
        length=len(record.body),
        http_headers=status,
        warc_headers_dict=warc_headers,
    )


def _request(writer: WARCWriter, record: Record, date: str) -> Any:
    parts = urlsplit(record.url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    target = quote(target, safe=_URL_SAFE)  # the request line is ASCII
    headers = []
    authority = parts.netloc.rpartition("@")[2]
    for name, value in _header_pairs(record.request_headers):
        if name == ":authority":
            authority = value
        elif not name.startswith(":"):
            headers.append((name, value))
    if not any(name.lower() == "host" for name, _ in headers):
        headers.insert(0, ("Host", authority))
    body = record.request_body or b""
    line = StatusAndHeaders(
        f"{record.method} {target} {_protocol(record)}", headers, is_http_request=True
    )
    return writer.create_warc_record(
        record.url,
        "request",
        payload=io.BytesIO(body),
        length=len(body),
        http_headers=line,
        warc_headers_dict={"WARC-Date": date},
    )


def _index_line(record: Record, warc_headers: Any, date: str, offset: int, length: int) -> str:
    """The line `cdxj-indexer --post-append` writes for this response record."""
    entry: dict[str, Any] = {"url": record.url}
    mime = _header(record.response_headers, "content-type")
    if mime:
        entry["mime"] = _MIME_END.split(mime, 1)[0].strip()
    entry.update(
        status=str(record.status),
        digest=warc_headers.get_header("WARC-Payload-Digest"),
        length=str(length),
        offset=str(offset),
        filename=WARC_NAME,
    )
    key_url = record.url
    method = record.method.upper()
    if method in ("POST", "PUT"):
        query = _body_query(record)
        key_url += ("&" if "?" in record.url else "?") + f"__wb_method={record.method}"
        if query:
            key_url += "&" + query
        entry.update(requestBody=query, method=method)
    return f"{_urlkey(key_url)} {iso_date_to_timestamp(date)} {json.dumps(entry)}\n"


def _urlkey(url: str) -> str:
    try:
        return str(surt.surt(url))
    except Exception:  # a URL the SURT canonicalizer cannot parse is keyed as it is, as cdxj does
        return url


def _body_query(record: Record) -> str:
    """A request body as the query replay tools match POSTs by: form fields as they are, JSON
    flattened to its leaves, anything else base64 (multipart bodies too, which cdxj-indexer
    splits into fields; ours are keyed by their bytes)."""
    body = record.request_body or b""
    sized = _header(record.request_headers, "content-length")
    try:
        body = body[: int(sized)] if sized else body[:_UNSIZED_BODY]
    except ValueError:
        return ""
    mime = _header(record.request_headers, "content-type")
    binary = "__wb_post_data=" + base64.b64encode(body).decode()
    if mime.startswith("application/x-www-form-urlencoded"):
        try:
            query = unquote_plus(body.decode("utf-8"))
        except UnicodeDecodeError:
            query = binary
    # Any body that does not parse is keyed as cdxj-indexer keys it, whatever the reason.
    elif mime.startswith("application/json"):
        try:
            query = _flattened(body)
        except Exception:
            query = ""
    elif mime.startswith("text/plain"):
        try:
            query = _flattened(body)
        except Exception:
            query = binary
    else:
        query = binary
    return query[:_MAX_QUERY]


def _flattened(body: bytes) -> str:
    """JSON's leaf values by their key, a repeated key numbered `key.2_`, `key.3_`, …; a body of
    JSON lines is read line by line."""
    found: dict[str, str] = {}
    repeats: dict[str, int] = {}

    def key(name: str) -> str:
        if name not in found:
            return name
        repeats[name] = repeats.get(name, 1) + 1
        return f"{name}.{repeats[name]}_"

    def walk(value: Any, name: str = "") -> None:
        if isinstance(value, dict):
            for child, inner in value.items():
                walk(inner, child)
        elif isinstance(value, list):
            for inner in value:
                walk(inner, name)
        elif name:
            found[key(name)] = str(value)

    try:
        walk(json.loads(body))
    except json.JSONDecodeError:
        if b"\n" not in body:
            raise
        for line in body.split(b"\n"):
            walk(json.loads(line))
    return urlencode(found)


def _header_pairs(headers: dict[str, str]) -> list[tuple[str, str]]:
    # CDP joins a repeated header's values with newlines; the wire has one line for each.
    return [(name, value) for name, joined in headers.items() for value in str(joined).split("\n")]


def _header(headers: dict[str, str], name: str) -> str:
    return next((str(v) for k, v in headers.items() if k.lower() == name), "")


def _protocol(record: Record) -> str:
    # An HTTP/2 or HTTP/3 exchange is written in HTTP/1.1's shape, which is what WARC records hold.
    return "HTTP/1.0" if record.protocol.lower() == "http/1.0" else "HTTP/1.1"


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _iso(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _zip_time(seconds: float) -> tuple[int, int, int, int, int, int]:
    moment = datetime.fromtimestamp(max(seconds, 315532800), UTC)  # ZIP dates start in 1980
    return (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)
