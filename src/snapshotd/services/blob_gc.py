"""Blob garbage collection: blobs are content-addressed and may be shared by several snapshots, so
one is deleted only once no artifact refers to it and it is old enough that no capture is about to.
"""

from __future__ import annotations

from sqlalchemy import select

from snapshotd.store.blobs import BlobStore
from snapshotd.store.db import Database
from snapshotd.store.models import Artifact


def delete_unreferenced(db: Database, blobs: BlobStore, digests: set[str], grace: int) -> int:
    """Deletes the blobs among `digests` that no artifact refers to and that were not written in
    the last `grace` seconds (a capture storing the same bytes writes the blob before its row)."""
    if not digests:
        return 0
    with db.session() as session:
        used = set(session.scalars(select(Artifact.sha256).where(Artifact.sha256.in_(digests))))
    removed = 0
    for digest in digests - used:
        age = blobs.age(digest)
        if age is not None and age >= grace:
            blobs.delete(digest)
            removed += 1
    return removed
