"""Signed, expiring download links for artifacts, usable without a token (an `<img src>`).

A link carries the snapshot id, the artifact role, an expiry (Unix seconds) and an HMAC-SHA256
of the three, keyed with the owning organization's signing key. It never outlives the snapshot.

With blobs in S3, a download may instead be answered with a redirect to a presigned bucket URL
(`direct_url`), bounded the same way.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from snapshotd.errors import Gone, NotFound
from snapshotd.store.blobs import BlobStore
from snapshotd.store.db import Database
from snapshotd.store.models import Artifact, Organization, Snapshot, utcnow

# Captured markup is evidence to download, never a page for a browser to render.
ATTACHMENT_ROLES = ("html", "mhtml")


def _signature(key: str, snapshot_id: str, role: str, expires: int) -> str:
    message = f"{snapshot_id}\n{role}\n{expires}".encode()
    digest = hmac.new(key.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class Downloads:
    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self.db = db
        self.blobs = blobs

    def sign(self, snapshot: Snapshot, role: str, *, lifetime: int) -> tuple[int, str]:
        """Returns (expires, signature) for a link to `role` of `snapshot`."""
        expires = int(time.time()) + lifetime
        if snapshot.expires_at is not None:
            expires = min(expires, int(snapshot.expires_at.timestamp()))
        with self.db.session() as session:
            org = session.get(Organization, snapshot.org_id)
            if org is None:
                raise NotFound("organization not found")
            return expires, _signature(org.signing_key, snapshot.id, role, expires)

    def verify(self, snapshot_id: str, role: str, expires: int, signature: str) -> str:
        """Returns the owning org id when the link is genuine and still valid."""
        with self.db.session() as session:
            snapshot = session.get(Snapshot, snapshot_id)
            org = session.get(Organization, snapshot.org_id) if snapshot else None
            if snapshot is None or org is None:
                raise NotFound("no such download")
            expected = _signature(org.signing_key, snapshot_id, role, expires)
            # As bytes: compare_digest refuses str with characters outside ASCII, which a URL
            # can hold.
            if not hmac.compare_digest(expected.encode(), signature.encode()):
                raise NotFound("no such download")
            if expires < time.time():
                raise Gone("this download link has expired")
            return snapshot.org_id

    def direct_url(self, snapshot: Snapshot, artifact: Artifact, *, lifetime: int) -> str | None:
        """A URL straight into the blob store (a presigned S3 GET), or None when the store has
        none or the snapshot has under a second left. It lives at most `lifetime` seconds and
        never past the snapshot's own expiry, so a redirect cannot outlive what it points at."""
        if snapshot.expires_at is not None and not snapshot.legal_hold:
            lifetime = min(lifetime, int((snapshot.expires_at - utcnow()).total_seconds()))
        if lifetime < 1:
            return None
        filename = None
        if artifact.role in ATTACHMENT_ROLES:
            filename = f"{snapshot.id}.{artifact.role}"
        return self.blobs.url(
            artifact.sha256, expires_in=lifetime, media_type=artifact.media_type, filename=filename
        )
