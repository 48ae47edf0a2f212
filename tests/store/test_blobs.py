from __future__ import annotations

import hashlib
import os
import secrets
import time
from pathlib import Path

import httpx
import pytest

from snapshotd.config import Settings
from snapshotd.store.blobs import (
    BlobStore,
    FileBlobStore,
    content_disposition,
    make_blob_store,
)
from snapshotd.store.s3 import S3BlobStore


def test_put_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    data = b"\x89PNG fake bytes"
    digest = store.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert store.put(data) == digest
    assert store.exists(digest)
    with store.open(digest) as handle:
        assert handle.read() == data
    assert not list(tmp_path.rglob(".tmp-*"))


def test_delete_and_missing(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    digest = store.put(b"x")
    store.delete(digest)
    store.delete(digest)
    assert not store.exists(digest)
    with pytest.raises(KeyError):
        store.open(digest)


def test_refuses_names_that_are_not_digests(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    with pytest.raises(ValueError):
        store.open("../../etc/passwd")
    digest = store.put(b"y")
    assert store.url(digest, expires_in=60) is None
    assert store.url(digest, expires_in=60, media_type="text/html", filename="a.html") is None


# -- one contract, both stores --------------------------------------------------------------------

S3_ENDPOINT = os.environ.get("SNAPSHOTD_TEST_S3_ENDPOINT", "")


BUCKET = "snapshotd-test"


def s3_store() -> S3BlobStore:
    """A fresh prefix in the suite's one bucket (SeaweedFS gives every bucket its own volumes)."""
    if not S3_ENDPOINT:
        if os.environ.get("SNAPSHOTD_TEST_REQUIRE_PG"):
            pytest.fail("SNAPSHOTD_TEST_S3_ENDPOINT is not set")
        pytest.skip("S3 tests run under `make test`, which starts SeaweedFS")
    settings = Settings(
        blobs=f"s3://{BUCKET}/t-{secrets.token_hex(6)}",
        s3_endpoint_url=S3_ENDPOINT,
        s3_access_key_id="snapshotd-test",
        s3_secret_access_key="snapshotd-test-secret",
    )
    store = make_blob_store(settings)
    assert isinstance(store, S3BlobStore)
    deadline = time.monotonic() + 60
    while True:  # SeaweedFS takes a few seconds to start with the suite
        try:
            store.client.head_bucket(Bucket=BUCKET)
            return store
        except Exception:
            try:
                store.client.create_bucket(Bucket=BUCKET)
                return store
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


@pytest.fixture(params=["folder", "s3"])
def any_blobs(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "folder":
        return make_blob_store(Settings(data_dir=tmp_path))
    return s3_store()


def test_the_contract(any_blobs: BlobStore) -> None:
    data = secrets.token_bytes(2048)
    digest = any_blobs.put(data)
    assert digest == hashlib.sha256(data).hexdigest() and any_blobs.exists(digest)
    with any_blobs.open(digest) as handle:
        assert handle.read() == data
    age = any_blobs.age(digest)
    assert age is not None and 0 <= age < 60
    assert any_blobs.put(data) == digest  # the same bytes are kept once
    any_blobs.delete(digest)
    any_blobs.delete(digest)
    assert not any_blobs.exists(digest) and any_blobs.age(digest) is None
    with pytest.raises(KeyError):
        any_blobs.open(digest)
    with pytest.raises(ValueError):
        any_blobs.open("../../etc/passwd")


def test_a_large_artifact_round_trips(any_blobs: BlobStore) -> None:
    data = secrets.token_bytes(12 * 1024 * 1024)  # past boto3's 8 MiB multipart threshold
    digest = any_blobs.put(data)
    with any_blobs.open(digest) as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == digest


def test_open_at_an_offset_reads_from_there_to_the_end(any_blobs: BlobStore) -> None:
    data = secrets.token_bytes(4096)
    digest = any_blobs.put(data)
    for offset in (0, 1, 4000, 4095):
        with any_blobs.open(digest, offset) as handle:
            assert handle.read() == data[offset:], offset


def test_presigned_urls_expire() -> None:
    store = s3_store()
    digest = store.put(b"shared bytes")
    url = store.url(digest, expires_in=2, media_type="image/png", filename="snp_1.png")
    assert url is not None and httpx.get(url).content == b"shared bytes"
    time.sleep(3)
    assert httpx.get(url).status_code == 403


def test_a_presigned_url_answers_with_the_type_and_name_asked_for() -> None:
    store = s3_store()
    page = b"<!doctype html><title>evidence</title>"
    digest = store.put(page)
    url = store.url(digest, expires_in=60, media_type="text/html", filename="snp_abc.html")
    assert url is not None
    answer = httpx.get(url)
    assert answer.status_code == 200 and answer.content == page
    assert answer.headers["content-type"] == "text/html"
    assert answer.headers["content-disposition"] == 'attachment; filename="snp_abc.html"'
    inline = store.url(digest, expires_in=60, media_type="application/octet-stream")
    assert inline is not None
    answer = httpx.get(inline)
    assert answer.headers["content-type"] == "application/octet-stream"
    assert "content-disposition" not in answer.headers
    # The headers are signed: a holder of the URL cannot swap them.
    forged = url.replace("text%2Fhtml", "image%2Fsvg%2Bxml")
    assert forged != url and httpx.get(forged).status_code == 403
    distant = store.url(digest, expires_in=90 * 86400)
    assert distant is not None and "X-Amz-Expires=604800" in distant
    assert httpx.get(distant).content == page


def test_an_awkward_filename_cannot_break_the_header() -> None:
    assert content_disposition("snp_1.mhtml") == 'attachment; filename="snp_1.mhtml"'
    odd = content_disposition('a"b\\c\r\nSet-Cookie: x.html')
    assert odd.startswith("attachment; filename=\"a_b_c__Set-Cookie: x.html\"; filename*=UTF-8''")
    assert "\r" not in odd and "\n" not in odd
    assert content_disposition("café.pdf") == (
        "attachment; filename=\"caf_.pdf\"; filename*=UTF-8''caf%C3%A9.pdf"
    )


def test_a_put_of_stored_bytes_refreshes_the_age() -> None:
    store = s3_store()
    digest = store.put(b"again")
    time.sleep(2.2)
    before = store.age(digest)
    assert before is not None and before >= 2
    store.put(b"again")
    after = store.age(digest)
    assert after is not None and after < 2


def test_a_put_racing_a_sweeper_still_stores_the_bytes() -> None:
    """A sweeper may delete an old unreferenced blob between a `put`'s HEAD and its refreshing
    copy; the put must then store the bytes afresh rather than fail."""
    store = s3_store()
    data = secrets.token_bytes(64)
    digest = store.put(data)
    head = store._head

    def head_then_sweep(name: str) -> dict[str, object] | None:
        answer = head(name)
        store.delete(name)
        return answer

    store._head = head_then_sweep  # type: ignore[method-assign]
    assert store.put(data) == digest
    del store._head
    with store.open(digest) as handle:
        assert handle.read() == data


# -- scan and unfinished writes ------------------------------------------------------------------


def test_scan_lists_every_blob_with_its_age(any_blobs: BlobStore) -> None:
    assert list(any_blobs.scan()) == []
    digests = {any_blobs.put(secrets.token_bytes(32)) for _ in range(12)}
    listed = dict(any_blobs.scan())
    assert set(listed) == digests
    assert all(0 <= age < 60 for age in listed.values())
    some = sorted(digests)[0]
    for length in (1, 2, 3, 4, 5, 64):
        start = some[:length]
        assert {d for d, _ in any_blobs.scan(start)} == {d for d in digests if d.startswith(start)}
    any_blobs.delete(some)
    assert {d for d, _ in any_blobs.scan()} == digests - {some}
    for bad in ("AB", "../", "g", "a" * 65):
        with pytest.raises(ValueError):
            list(any_blobs.scan(bad))


def test_scan_skips_what_is_not_a_blob(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    digest = store.put(b"the one blob")
    leaf = tmp_path / digest[:2] / digest[2:4]
    other = hashlib.sha256(b"elsewhere").hexdigest()
    (tmp_path / "README").write_text("not a blob")
    (tmp_path / "zz").mkdir()
    (leaf / "notes.txt").write_text("not a blob")
    (leaf / other).write_bytes(b"a digest in the wrong folder")
    (leaf / ".tmp-abc123").write_bytes(b"half a write")
    (leaf / ("0" * 64)).mkdir()
    assert list(store.scan()) == [(digest, pytest.approx(0, abs=60))]


def test_s3_scan_skips_keys_outside_the_layout() -> None:
    store = s3_store()
    digest = store.put(b"the one blob")
    other = hashlib.sha256(b"elsewhere").hexdigest()
    for key in ("README", f"{digest[:2]}/{digest[2:4]}/notes.txt", f"{other[:2]}/xx/{other}"):
        store.client.put_object(Bucket=store.bucket, Key=store.prefix + key, Body=b"x")
    assert [d for d, _ in store.scan()] == [digest]


def test_stale_temp_files_are_cleared_and_young_ones_kept(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    digest = store.put(b"a finished write")
    leaf = tmp_path / digest[:2] / digest[2:4]
    stale, young = leaf / ".tmp-stale", leaf / ".tmp-young"
    stale.write_bytes(b"killed mid-write")
    young.write_bytes(b"being written")
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    assert store.clear_unfinished(600, prefix="f" if digest[0] != "f" else "0") == 0
    assert store.clear_unfinished(600) == 1
    assert not stale.exists() and young.exists() and store.exists(digest)
    assert store.clear_unfinished(0) == 1 and not young.exists()


def test_abandoned_multipart_uploads_are_aborted() -> None:
    store = s3_store()
    digest = hashlib.sha256(b"never finished").hexdigest()
    upload = store.client.create_multipart_upload(Bucket=store.bucket, Key=store._key(digest))
    store.client.upload_part(
        Bucket=store.bucket,
        Key=store._key(digest),
        UploadId=upload["UploadId"],
        PartNumber=1,
        Body=b"part one",
    )

    def pending() -> list[str]:
        answer = store.client.list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix)
        return [item["UploadId"] for item in answer.get("Uploads", [])]

    assert store.clear_unfinished(3600) == 0
    assert pending() == [upload["UploadId"]]
    assert store.clear_unfinished(0) == 1
    assert pending() == [] and not store.exists(digest)


def test_a_bad_blobs_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="s3://"):
        Settings(blobs="ftp://bucket")
