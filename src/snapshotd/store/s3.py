"""The S3 blob store: blobs in an S3-compatible bucket, laid out like the folder store.

boto3 comes with the optional `s3` extra, so it is imported only where a bucket is used: a
deployment keeping blobs on disk never needs it.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Iterator
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from snapshotd.rules import blob_bucket
from snapshotd.store.blobs import (
    check_digest,
    check_prefix,
    content_disposition,
    is_digest,
    layout,
)

if TYPE_CHECKING:
    from snapshotd.config import Settings

_MISSING = ("404", "NoSuchKey", "NotFound")
PRESIGN_LIMIT = 7 * 24 * 3600


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

        location = blob_bucket(settings.blobs)
        assert location is not None, "make_blob_store picks S3 only for s3:// blobs"
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
        return cls(client, *location)

    def _key(self, digest: str) -> str:
        return self.prefix + layout(check_digest(digest))

    def _digest_of(self, key: str) -> str | None:
        """The digest a key of this store's layout names; None for any other key."""
        digest = key.rsplit("/", 1)[-1]
        return digest if is_digest(digest) and key == self._key(digest) else None

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

    def open(self, digest: str, offset: int = 0) -> BinaryIO:
        from botocore.exceptions import ClientError

        ranged = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self._key(digest), **ranged)
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
            Bucket=self.bucket, Prefix=self.prefix + layout(check_prefix(prefix))
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
            Bucket=self.bucket, Prefix=self.prefix + layout(check_prefix(prefix))
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
