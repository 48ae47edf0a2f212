"""A small but real WACZ 1.1 web archive for tests: one HTML page written as a WARC response
record with warcio, indexed as CDXJ, listed in pages.jsonl and described by datapackage.json;
and storing one as a snapshot's `wacz` artifact, the way a finished capture leaves it."""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import zipfile
from datetime import UTC, datetime, timedelta

from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.timeutils import datetime_to_iso_date
from warcio.warcwriter import WARCWriter

from snapshotd.store.blobs import FileBlobStore
from snapshotd.store.db import Database
from snapshotd.store.models import Artifact, Share, Snapshot, utcnow

CAPTURED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def page_archive(url: str, html: str, *, title: str = "Archived page") -> bytes:
    """The WACZ of one page at `url` whose body is `html`, captured at CAPTURED."""
    warc = _warc(url, html.encode())
    files = {
        "archive/data.warc.gz": warc,
        "indexes/index.cdx": _cdxj(warc, "data.warc.gz"),
        "pages/pages.jsonl": _pages(url, title),
    }
    package = {
        "profile": "data-package",
        "wacz_version": "1.1.1",
        "title": title,
        "created": CAPTURED.isoformat().replace("+00:00", "Z"),
        "software": "snapshotd tests",
        "resources": [
            {
                "name": path.rsplit("/", 1)[1],
                "path": path,
                "hash": "sha256:" + hashlib.sha256(data).hexdigest(),
                "bytes": len(data),
            }
            for path, data in files.items()
        ],
    }
    out = io.BytesIO()
    # Stored, not deflated: a viewer reads members by byte range, straight from the zip.
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for path, data in files.items():
            archive.writestr(path, data)
        archive.writestr("datapackage.json", json.dumps(package, indent=2))
    return out.getvalue()


def _warc(url: str, body: bytes) -> bytes:
    out = io.BytesIO()
    writer = WARCWriter(out, gzip=True)
    headers = StatusAndHeaders(
        "200 OK",
        [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))],
        protocol="HTTP/1.1",
    )
    record = writer.create_warc_record(
        url,
        "response",
        payload=io.BytesIO(body),
        length=len(body),  # known, so warcio digests the body in place, with no temporary file
        http_headers=headers,
        warc_headers_dict={"WARC-Date": datetime_to_iso_date(CAPTURED)},
    )
    writer.write_record(record)
    return out.getvalue()


def _cdxj(warc: bytes, filename: str) -> bytes:
    """One CDXJ line per response record: SURT key, 14-digit timestamp, JSON locating it."""
    lines = []
    records = ArchiveIterator(io.BytesIO(warc))
    for record in records:
        if record.rec_type != "response":
            continue
        url = record.rec_headers.get_header("WARC-Target-URI")
        status = record.http_headers.get_statuscode()
        mime = record.http_headers.get_header("Content-Type").split(";")[0]
        digest = record.rec_headers.get_header("WARC-Payload-Digest")
        fields = {
            "url": url,
            "mime": mime,
            "status": status,
            "digest": digest,
            "length": str(records.get_record_length()),
            "offset": str(records.get_record_offset()),
            "filename": filename,
        }
        lines.append(f"{_surt(url)} {CAPTURED:%Y%m%d%H%M%S} {json.dumps(fields)}")
    return ("\n".join(sorted(lines)) + "\n").encode()


def _surt(url: str) -> str:
    """The sort key wabac looks records up by: host labels reversed, then the path."""
    rest = url.split("://", 1)[1]
    host, _, path = rest.partition("/")
    labels = host.lower().split(".")
    if labels[0] == "www":
        labels = labels[1:]
    return ",".join(reversed(labels)) + ")/" + path.lower()


def _pages(url: str, title: str) -> bytes:
    lines = [
        {"format": "json-pages-1.0", "id": "pages", "title": "All Pages"},
        {"id": "page-1", "url": url, "ts": CAPTURED.isoformat(), "title": title},
    ]
    return ("\n".join(json.dumps(line) for line in lines) + "\n").encode()


def add_archive(db: Database, blobs: FileBlobStore, snapshot_id: str, url: str, html: str) -> bytes:
    """Stores the WACZ of `html` at `url` as the snapshot's `wacz` artifact; returns its bytes."""
    data = page_archive(url, html)
    store_archive(db, blobs, snapshot_id, data)
    return data


def store_archive(db: Database, blobs: FileBlobStore, snapshot_id: str, data: bytes) -> None:
    """Stores `data` as the snapshot's `wacz` artifact."""
    with db.session() as session:
        session.add(
            Artifact(
                snapshot_id=snapshot_id,
                role="wacz",
                sha256=blobs.put(data),
                size=len(data),
                media_type="application/zip",
            )
        )


def share_of(
    db: Database, snapshot_id: str, *, replay: bool, life: timedelta = timedelta(days=1)
) -> str:
    """A public share link of the snapshot, offering its archived page or not."""
    share_id = secrets.token_urlsafe(32)
    with db.session() as session:
        snapshot = session.get(Snapshot, snapshot_id)
        assert snapshot is not None
        session.add(
            Share(
                id=share_id,
                org_id=snapshot.org_id,
                snapshot_id=snapshot_id,
                public=True,
                replay=replay,
                created_by="tests",
                expires_at=utcnow() + life,
            )
        )
    return share_id
