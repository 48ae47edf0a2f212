"""Content-addressed artifact storage: a blob's name is the SHA-256 of its bytes.

Both stores lay blobs out as `ab/cd/<digest>` (the digest's first two bytes in hex as folders), so a
listing can be cut into 256 shards by the first two hex digits and a shard read on its own.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, cast
from urllib.parse import quote, urlsplit

if TYPE_CHECKING:
    from snapshotd.config import Settings

HEX = frozenset("0123456789abcdef")
TEMP_PREFIX = ".tmp-"
_MISSING = ("404", "NoSuchKey", "NotFound")
PRESIGN_LIMIT = 7 * 24 * 3600


class BlobStore(Protocol):
    def put(self, data: bytes) -> str:
        """Stores `data`, returns its SHA-256 hex digest; the same bytes twice are kept once."""
        ...

    def open(self, digest: str) -> BinaryIO: ...

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


def _layout(digest: str) -> str:
    """`ab/cd/abcd…` for a digest; for a prefix of one, the start all matching names share."""
    if len(digest) <= 2:
        return digest
    if len(digest) <= 4:
        return f"{digest[:2]}/{digest[2:]}"
    return f"{digest[:2]}/{digest[2:4]}/{digest}"


def _is_digest(name: str) -> bool:
    return len(name) == 64 and HEX.issuperset(name)


def _check_digest(digest: str) -> str:
    if not _is_digest(digest):
        raise ValueError(f"not a SHA-256 hex digest: {digest!r}")
    return digest


def _check_prefix(prefix: str) -> str:
    if len(prefix) > 64 or not HEX.issuperset(prefix):
        raise ValueError(f"not a prefix of a SHA-256 hex digest: {prefix!r}")
    return prefix


class FileBlobStore:
    """Blobs under `root/ab/cd/<digest>`, written to a temp file and renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, digest: str) -> Path:
        return self.root / _layout(_check_digest(digest))

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

    def open(self, digest: str) -> BinaryIO:
        try:
            return self._path(digest).open("rb")
        except FileNotFoundError:
            raise KeyError(digest) from None

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
        for leaf, files in self._leaves(_check_prefix(prefix)):
            for entry in files:
                name = entry.name
                if not (_is_digest(name) and name.startswith(prefix) and name[:4] == leaf):
                    continue
                age = _file_age(entry)
                if age is not None:
                    yield name, age

    def clear_unfinished(self, older_than: float, prefix: str = "") -> int:
        """Deletes the temp files of writes that never reached their rename."""
        removed = 0
        for _leaf, files in self._leaves(_check_prefix(prefix)):
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


def _store_now(response: dict[str, Any]) -> float:
    """The store's own clock when it answered (its `Date` header), so that ages measured against a
    timestamp it wrote do not depend on this machine's clock agreeing with it; ours without one."""
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    try:
        return parsedate_to_datetime(headers["date"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return time.time()


def _since(moment: datetime, now: float) -> float:
    return max(0.0, now - moment.timestamp())


def _missing(error: Exception) -> bool:
    response = getattr(error, "response", None) or {}
    return response.get("Error", {}).get("Code") in _MISSING


class S3BlobStore:
    """Blobs in an S3-compatible bucket under `prefix`, keyed like the folder store. boto3 retries
    5xx answers and timeouts with backoff (standard mode) and uploads large artifacts in parts.
    A `put` of bytes already stored copies the object onto itself, so its age restarts like a
    file's would. Ages are read against the store's clock, never this machine's."""

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    @classmethod
    def from_settings(cls, settings: Settings) -> S3BlobStore:
        import boto3  # only deployments on S3 install it (the `s3` extra)
        from botocore.config import Config

        parts = urlsplit(settings.blobs)
        client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url or None,
            aws_access_key_id=settings.s3_access_key_id or None,
            aws_secret_access_key=settings.s3_secret_access_key or None,
            region_name=settings.s3_region,
            config=Config(
                # A few quick tries: a dead endpoint fails the attempt in seconds, and the job's
                # own retries provide the longer backoff.
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=3,
                read_timeout=30,
                s3={"addressing_style": "path"},
                # Presigned URLs default to the legacy V2 signature, which stores (SeaweedFS
                # among them) verify without the response-header overrides, refusing the URL.
                signature_version="s3v4",
            ),
        )
        return cls(client, parts.netloc, parts.path)

    def _key(self, digest: str) -> str:
        return self.prefix + _layout(_check_digest(digest))

    def _digest_of(self, key: str) -> str | None:
        """The digest a key of this store's layout names; None for any other key."""
        digest = key.rsplit("/", 1)[-1]
        return digest if _is_digest(digest) and key == self._key(digest) else None

    def _head(self, digest: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            head: dict[str, Any] = self.client.head_object(
                Bucket=self.bucket, Key=self._key(digest)
            )
            return head
        except ClientError as error:
            if _missing(error):
                return None
            raise

    def put(self, data: bytes) -> str:
        from botocore.exceptions import ClientError

        digest = hashlib.sha256(data).hexdigest()
        key = self._key(digest)
        if self._head(digest) is not None:
            try:
                self.client.copy_object(
                    Bucket=self.bucket,
                    Key=key,
                    CopySource={"Bucket": self.bucket, "Key": key},
                    MetadataDirective="REPLACE",
                    Metadata={"touched": str(int(time.time()))},
                )
                return digest
            except ClientError as error:
                if not _missing(error):
                    raise
                # A sweeper deleted it after the HEAD: store it afresh.
        # upload_fileobj switches to a multipart upload for large artifacts.
        self.client.upload_fileobj(io.BytesIO(data), self.bucket, key)
        return digest

    def open(self, digest: str) -> BinaryIO:
        from botocore.exceptions import ClientError

        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self._key(digest))
        except ClientError as error:
            if _missing(error):
                raise KeyError(digest) from None
            raise
        return cast(BinaryIO, answer["Body"])

    def delete(self, digest: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(digest))

    def exists(self, digest: str) -> bool:
        return self._head(digest) is not None

    def age(self, digest: str) -> float | None:
        head = self._head(digest)
        if head is None:
            return None
        return _since(head["LastModified"], _store_now(head))

    def url(
        self,
        digest: str,
        *,
        expires_in: int,
        media_type: str | None = None,
        filename: str | None = None,
    ) -> str | None:
        """A presigned GET valid for `expires_in` seconds, and never more than the seven days a
        V4 signature can cover (a URL is made per request, so a shorter one costs nothing);
        callers pass no more than what is left of the snapshot's or link's own life. The
        response headers are part of the signature: whoever holds the URL cannot change them."""
        params = {"Bucket": self.bucket, "Key": self._key(digest)}
        if media_type:
            params["ResponseContentType"] = media_type
        if filename:
            params["ResponseContentDisposition"] = content_disposition(filename)
        url: str = self.client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=min(max(1, expires_in), PRESIGN_LIMIT)
        )
        return url

    def scan(self, prefix: str = "") -> Iterator[tuple[str, float]]:
        """One LIST request per thousand keys; keys outside the layout are not blobs and are
        skipped, so other objects sharing the bucket are never reported."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + _layout(_check_prefix(prefix))
        )
        for page in pages:
            now = _store_now(page)
            for item in page.get("Contents", []):
                digest = self._digest_of(item["Key"])
                if digest is not None and digest.startswith(prefix):
                    yield digest, _since(item["LastModified"], now)

    def clear_unfinished(self, older_than: float, prefix: str = "") -> int:
        """Aborts multipart uploads that were never completed: the bucket keeps (and bills) their
        parts until someone does."""
        from botocore.exceptions import ClientError

        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=self.prefix + _layout(_check_prefix(prefix))
        )
        aborted = 0
        for page in pages:
            now = _store_now(page)
            for upload in page.get("Uploads", []):
                digest = self._digest_of(upload["Key"])
                if digest is None or not digest.startswith(prefix):
                    continue
                if _since(upload["Initiated"], now) < older_than:
                    continue
                try:
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    aborted += 1
                except ClientError as error:
                    if error.response.get("Error", {}).get("Code") != "NoSuchUpload":
                        raise
        return aborted


def make_blob_store(settings: Settings) -> BlobStore:
    """The folder in the data dir, or the bucket `SNAPSHOTD_BLOBS=s3://bucket/prefix` names."""
    if settings.blobs.startswith("s3://"):
        return S3BlobStore.from_settings(settings)
    return FileBlobStore(settings.blobs_dir)
