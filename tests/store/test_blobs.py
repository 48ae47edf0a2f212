from __future__ import annotations

import hashlib
import os
import secrets
import time
from pathlib import Path

import httpx
import pytest

from snapshotd.config import Settings
from snapshotd.store.blobs import BlobStore, FileBlobStore, S3BlobStore, make_blob_store


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
    assert store.url(store.put(b"y"), expires_in=60) is None


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


def test_presigned_urls_expire() -> None:
    store = s3_store()
    digest = store.put(b"shared bytes")
    url = store.url(digest, expires_in=2)
    assert url is not None and httpx.get(url).content == b"shared bytes"
    time.sleep(3)
    assert httpx.get(url).status_code == 403


def test_a_put_of_stored_bytes_refreshes_the_age() -> None:
    store = s3_store()
    digest = store.put(b"again")
    time.sleep(2.2)
    assert (store.age(digest) or 0) >= 2
    store.put(b"again")
    assert (store.age(digest) or 99) < 2


def test_a_bad_blobs_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="s3://"):
        Settings(blobs="ftp://bucket")
