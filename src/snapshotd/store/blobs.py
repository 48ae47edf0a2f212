"""Content-addressed artifact storage: a blob's name is the SHA-256 of its bytes."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, cast
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from snapshotd.config import Settings


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

    def url(self, digest: str, *, expires_in: int) -> str | None:
        """A direct URL valid for `expires_in` seconds, or None when the API serves it."""
        ...


def _check_digest(digest: str) -> str:
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"not a SHA-256 hex digest: {digest!r}")
    return digest


class FileBlobStore:
    """Blobs under `root/ab/cd/<digest>`, written to a temp file and renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, digest: str) -> Path:
        _check_digest(digest)
        return self.root / digest[:2] / digest[2:4] / digest

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
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
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

    def url(self, digest: str, *, expires_in: int) -> str | None:
        return None


class S3BlobStore:
    """Blobs in an S3-compatible bucket under `prefix`, keyed like the folder store. boto3 retries
    5xx answers and timeouts with backoff (standard mode) and uploads large artifacts in parts.
    A `put` of bytes already stored copies the object onto itself, so its age restarts like a
    file's would."""

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
                retries={"max_attempts": 5, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
                s3={"addressing_style": "path"},
            ),
        )
        return cls(client, parts.netloc, parts.path)

    def _key(self, digest: str) -> str:
        _check_digest(digest)
        return f"{self.prefix}{digest[:2]}/{digest[2:4]}/{digest}"

    def _head(self, digest: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            head: dict[str, Any] = self.client.head_object(
                Bucket=self.bucket, Key=self._key(digest)
            )
            return head
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        key = self._key(digest)
        if self._head(digest) is not None:
            self.client.copy_object(
                Bucket=self.bucket,
                Key=key,
                CopySource={"Bucket": self.bucket, "Key": key},
                MetadataDirective="REPLACE",
                Metadata={"touched": str(int(time.time()))},
            )
            return digest
        # upload_fileobj switches to a multipart upload for large artifacts.
        self.client.upload_fileobj(io.BytesIO(data), self.bucket, key)
        return digest

    def open(self, digest: str) -> BinaryIO:
        from botocore.exceptions import ClientError

        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self._key(digest))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
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
        return max(0.0, time.time() - head["LastModified"].timestamp())

    def url(self, digest: str, *, expires_in: int) -> str | None:
        """A presigned GET valid for `expires_in` seconds; callers pass no more than what is left
        of the snapshot's or link's own life."""
        url: str = self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self._key(digest)},
            ExpiresIn=max(1, expires_in),
        )
        return url


def make_blob_store(settings: Settings) -> BlobStore:
    """The folder in the data dir, or the bucket `SNAPSHOTD_BLOBS=s3://bucket/prefix` names."""
    if settings.blobs.startswith("s3://"):
        return S3BlobStore.from_settings(settings)
    return FileBlobStore(settings.blobs_dir)
