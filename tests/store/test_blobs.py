from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from snapshotd.store.blobs import FileBlobStore


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
