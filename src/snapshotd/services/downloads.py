"""Signed, expiring download links for artifacts, usable without a token (an `<img src>`).

A link carries the snapshot id, the artifact role, an expiry (Unix seconds) and an HMAC-SHA256
of the three, keyed with the owning organization's signing key. It never outlives the snapshot.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from snapshotd.errors import Gone, NotFound
from snapshotd.store.db import Database
from snapshotd.store.models import Organization, Snapshot


def _signature(key: str, snapshot_id: str, role: str, expires: int) -> str:
    message = f"{snapshot_id}\n{role}\n{expires}".encode()
    digest = hmac.new(key.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sign(db: Database, snapshot: Snapshot, role: str, *, lifetime: int) -> tuple[int, str]:
    """Returns (expires, signature) for a link to `role` of `snapshot`."""
    expires = int(time.time()) + lifetime
    if snapshot.expires_at is not None:
        expires = min(expires, int(snapshot.expires_at.timestamp()))
    with db.session() as session:
        org = session.get(Organization, snapshot.org_id)
        if org is None:
            raise NotFound("organization not found")
        return expires, _signature(org.signing_key, snapshot.id, role, expires)


def verify(db: Database, snapshot_id: str, role: str, expires: int, signature: str) -> str:
    """Returns the owning org id when the link is genuine and still valid."""
    with db.session() as session:
        snapshot = session.get(Snapshot, snapshot_id)
        org = session.get(Organization, snapshot.org_id) if snapshot else None
        if snapshot is None or org is None:
            raise NotFound("no such download")
        expected = _signature(org.signing_key, snapshot_id, role, expires)
        if not hmac.compare_digest(expected, signature):
            raise NotFound("no such download")
        if expires < time.time():
            raise Gone("this download link has expired")
        return snapshot.org_id
