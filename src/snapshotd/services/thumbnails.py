"""Thumbnails: a small WebP of a snapshot's image, made once and kept as its `thumbnail` artifact.

A thumbnail is derived, not evidence: it is stored content-addressed like every artifact (so the
sweeper and deletion treat it alike), but the signed manifest, bundles, PDF records and the API's
artifact lists leave it out (`evidence_artifacts`).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable
from typing import TypeVar

from PIL import Image
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from snapshotd.store.blobs import BlobStore
from snapshotd.store.db import Database
from snapshotd.store.models import Artifact

THUMBNAIL_ROLE = "thumbnail"
WIDTH = 400
# A full-page capture is cut to its top part: at most this many times as tall as it is wide.
MAX_ASPECT = 1.5
# Larger images are not thumbnailed (a capture is far smaller; an upload is capped lower still).
MAX_PIXELS = 200_000_000
MEDIA_TYPE = "image/webp"

_Item = TypeVar("_Item")


def evidence_artifacts(artifacts: Iterable[_Item]) -> list[_Item]:
    """The artifacts that are part of the record: all but the thumbnail."""
    return [each for each in artifacts if getattr(each, "role", None) != THUMBNAIL_ROLE]


def render(data: bytes) -> tuple[bytes, int, int] | None:
    """A WEBP thumbnail `WIDTH` pixels wide (never enlarged); None for what cannot be decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > MAX_PIXELS or width < 1 or height < 1:
                    return None
                keep = min(height, int(width * MAX_ASPECT))
                frame = image.crop((0, 0, width, keep)) if keep < height else image.copy()
    except (OSError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        return None
    target = min(WIDTH, frame.width)
    size = (target, max(1, round(frame.height * target / frame.width)))
    small = frame.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    small.save(out, format="WEBP", quality=80, method=4)
    return out.getvalue(), size[0], size[1]


class Thumbnails:
    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self.db = db
        self.blobs = blobs

    def ensure(self, snapshot_id: str) -> Artifact | None:
        """The snapshot's thumbnail artifact, made from its `image` artifact on first use; None
        when it has no image that can be shown small. The caller has checked the snapshot is the
        viewer's."""
        with self.db.session() as session:
            rows = {
                row.role: row
                for row in session.scalars(
                    select(Artifact).where(
                        Artifact.snapshot_id == snapshot_id,
                        Artifact.role.in_(("image", THUMBNAIL_ROLE)),
                    )
                )
            }
        if THUMBNAIL_ROLE in rows:
            return rows[THUMBNAIL_ROLE]
        image = rows.get("image")
        if image is None or not image.media_type.startswith("image/"):
            return None
        made = render(self.read(image))
        if made is None:
            return None
        data, width, height = made
        artifact = Artifact(
            snapshot_id=snapshot_id,
            role=THUMBNAIL_ROLE,
            sha256=self.blobs.put(data),
            size=len(data),
            media_type=MEDIA_TYPE,
            width=width,
            height=height,
        )
        try:
            with self.db.session() as session:
                session.add(artifact)
        except IntegrityError:  # another request made it at the same moment: use theirs
            with self.db.session() as session:
                return session.scalar(
                    select(Artifact).where(
                        Artifact.snapshot_id == snapshot_id, Artifact.role == THUMBNAIL_ROLE
                    )
                )
        return artifact

    def read(self, artifact: Artifact) -> bytes:
        with self.blobs.open(artifact.sha256) as stream:
            return stream.read()
