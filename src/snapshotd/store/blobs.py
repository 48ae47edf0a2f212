"""Content-addressed artifact storage: a blob's name is the SHA-256 of its bytes.

Both stores lay blobs out as `ab/cd/<digest>` (the digest's first two bytes in hex as folders), so a
listing can be cut into 256 shards by the first two hex digits and a shard read on its own.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol
from urllib.parse import quote

if TYPE_CHECKING:
    from snapshotd.config import Settings

HEX = frozenset("0123456789abcdef")
TEMP_PREFIX = ".tmp-"


class BlobStore(Protocol):
    def put(self, data: bytes) -> str:
        """Stores `data`, returns its SHA-256 hex digest; the same bytes twice are kept once."""
        ...

    def open(self, digest: str, offset: int = 0) -> BinaryIO:
        """The blob's bytes from `offset` on (a range request reads the end of a large blob
        without the rest); KeyError when there is no such blob."""
        ...

    def delete(self, digest: str) -> None: ...

    def exists(self, digest: str) -> bool: ...

    def age(self, digest: str) -> float | None:
        """Seconds since the blob was last written (a `put` of existing bytes counts), or None
        when it does not exist. The sweeper leaves young blobs alone."""
        ...

    def url(
        self,
        digest: str,
        *,
        expires_in: int,
        media_type: str | None = None,
        filename: str | None = None,
    ) -> str | None:
        """A direct URL valid for `expires_in` seconds, or None when the API serves it. The store
        answers it with `media_type` as the Content-Type and, given `filename`, as an attachment
        of that name: a browser following a redirect there must get what the API would send."""
        ...

    def scan(self, prefix: str = "") -> Iterator[tuple[str, float]]:
        """(digest, age in seconds) of every stored blob whose digest starts with `prefix` (hex),
        in no promised order. It is a listing, not a snapshot: a blob may be rewritten or deleted
        by the time it is read, so whoever deletes on its word asks `age` again first."""
        ...

    def clear_unfinished(self, older_than: float, prefix: str = "") -> int:
        """Removes writes that were started more than `older_than` seconds ago and never finished
        (a process killed in the middle of a `put`) among digests starting with `prefix`;
        returns how many. They hold space but no blob, so nothing can refer to them."""
        ...


def content_disposition(filename: str) -> str:
    """`attachment` with `filename` as RFC 6266 has it: a quoted ASCII fallback that no quote,
    backslash or control character can break out of, plus the exact name as `filename*` when the
    fallback had to change it."""
    fallback = "".join(c if " " <= c < "\x7f" and c not in '"\\' else "_" for c in filename)
    value = f'attachment; filename="{fallback}"'
    if fallback != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value


def layout(digest: str) -> str:
    """`ab/cd/abcd…` for a digest; for a prefix of one, the start all matching names share."""
    if len(digest) <= 2:
        return digest
    if len(digest) <= 4:
        return f"{digest[:2]}/{digest[2:]}"
    return f"{digest[:2]}/{digest[2:4]}/{digest}"


def is_digest(name: str) -> bool:
    return len(name) == 64 and HEX.issuperset(name)


def check_digest(digest: str) -> str:
    if not is_digest(digest):
        raise ValueError(f"not a SHA-256 hex digest: {digest!r}")
    return digest


def check_prefix(prefix: str) -> str:
    if len(prefix) > 64 or not HEX.issuperset(prefix):
        raise ValueError(f"not a prefix of a SHA-256 hex digest: {prefix!r}")
    return prefix


class FileBlobStore:
    """Blobs under `root/ab/cd/<digest>`, written to a temp file and renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, digest: str) -> Path:
        return self.root / layout(check_digest(digest))

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        if path.exists():
            try:
                os.utime(path)
                return digest
            except FileNotFoundError:
                pass
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def open(self, digest: str, offset: int = 0) -> BinaryIO:
        try:
            stream = self._path(digest).open("rb")
        except FileNotFoundError:
            raise KeyError(digest) from None
        if offset:
            stream.seek(offset)
        return stream

    def delete(self, digest: str) -> None:
        self._path(digest).unlink(missing_ok=True)

    def exists(self, digest: str) -> bool:
        return self._path(digest).exists()

    def age(self, digest: str) -> float | None:
        try:
            return max(0.0, time.time() - self._path(digest).stat().st_mtime)
        except FileNotFoundError:
            return None

    def url(
        self,
        digest: str,
        *,
        expires_in: int,
        media_type: str | None = None,
        filename: str | None = None,
    ) -> str | None:
        return None

    def scan(self, prefix: str = "") -> Iterator[tuple[str, float]]:
        for leaf, files in self._leaves(check_prefix(prefix)):
            for entry in files:
                name = entry.name
                if not (is_digest(name) and name.startswith(prefix) and name[:4] == leaf):
                    continue
                age = _file_age(entry)
                if age is not None:
                    yield name, age

    def clear_unfinished(self, older_than: float, prefix: str = "") -> int:
        """Deletes the temp files of writes that never reached their rename."""
        removed = 0
        for _leaf, files in self._leaves(check_prefix(prefix)):
            for entry in files:
                if entry.name.startswith(TEMP_PREFIX):
                    age = _file_age(entry)
                    if age is not None and age >= older_than:
                        Path(entry.path).unlink(missing_ok=True)
                        removed += 1
        return removed

    def _leaves(self, prefix: str) -> Iterator[tuple[str, list[os.DirEntry[str]]]]:
        """The `ab/cd` folders that can hold digests starting with `prefix`, each named by its
        four hex digits and listed whole, so no directory stays open while the caller works."""
        for first in _listing(self.root):
            if _is_shard(first, prefix[:2]):
                for second in _listing(Path(first.path)):
                    if _is_shard(second, prefix[2:4]):
                        yield first.name + second.name, _listing(Path(second.path))


def _listing(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return sorted(entries, key=lambda entry: entry.name)
    except FileNotFoundError:
        return []


def _is_shard(entry: os.DirEntry[str], start: str) -> bool:
    name = entry.name
    return (
        len(name) == 2
        and HEX.issuperset(name)
        and name.startswith(start)
        and entry.is_dir(follow_symlinks=False)
    )


def _file_age(entry: os.DirEntry[str]) -> float | None:
    """Seconds since a regular file was written; None once it is gone or if it is not one."""
    try:
        if not entry.is_file(follow_symlinks=False):
            return None
        return max(0.0, time.time() - entry.stat(follow_symlinks=False).st_mtime)
    except FileNotFoundError:
        return None


def make_blob_store(settings: Settings) -> BlobStore:
    """The folder in the data dir, or the bucket `SNAPSHOTD_BLOBS=s3://bucket/prefix` names."""
    if settings.blobs.startswith("s3://"):
        from snapshotd.store.s3 import S3BlobStore  # s3 imports this module's helpers

        return S3BlobStore.from_settings(settings)
    return FileBlobStore(settings.blobs_dir)
