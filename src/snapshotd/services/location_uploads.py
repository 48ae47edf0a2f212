"""Uploads to a location: a customer's own capture, such as a mobile app's screen taken on the
device. The file is checked to be a real PNG or JPEG within the size and pixel limits before
anything is stored; it is then sealed like any snapshot.
"""

from __future__ import annotations

import io
import warnings
from datetime import datetime, timedelta
from typing import Any

from PIL import Image

from snapshotd.config import Settings
from snapshotd.errors import BadRequest, PayloadTooLarge
from snapshotd.services.locations import Locations
from snapshotd.store.models import Artifact, Snapshot, utcnow
from snapshotd.timestamps import iso

UPLOAD_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg"}


def upload(
    locations: Locations,
    org_id: str,
    location_id: str,
    data: bytes,
    *,
    actor: str,
    captured_at: datetime | None = None,
    metadata: dict[str, Any] | None = None,
) -> Snapshot:
    """Stores a customer's own capture, after checking it is a PNG or JPEG within limits."""
    location = locations.get(org_id, location_id)
    if location.status == "archived":
        raise BadRequest("this location is archived; uploads are closed", field="id")
    if captured_at is not None and captured_at > utcnow() + timedelta(seconds=60):
        raise BadRequest("must be in the past", field="captured_time")
    media_type, width, height = _check_image(data, locations.settings)
    digest = locations.snapshots.blobs.put(data)
    with locations.db.session() as session:
        snapshot = locations.snapshots.create(
            session,
            org_id,
            "upload",
            None,
            options={"captured_time": (captured_at or utcnow()).isoformat()},
            surface="clickwrap",
            actor=actor,
            location_id=location.id,
            source="customer_provided",
        )
        snapshot.meta = {
            **(metadata or {}),
            "captured_time": iso(captured_at or utcnow()),
        }
        session.add(
            Artifact(
                snapshot_id=snapshot.id,
                role="image",
                sha256=digest,
                size=len(data),
                media_type=media_type,
                width=width,
                height=height,
            )
        )
        session.flush()
        locations.snapshots.seal(session, snapshot)
    return locations.snapshots.get(org_id, snapshot.id)


def _check_image(data: bytes, settings: Settings) -> tuple[str, int, int]:
    limit = settings.max_upload_bytes
    if len(data) > limit:
        raise PayloadTooLarge(f"the image is larger than {limit} bytes", field="file")
    if not data:
        raise BadRequest("send the image file", field="file")
    most = settings.max_upload_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                kind, (width, height) = image.format or "", image.size
                if width * height > most:
                    raise BadRequest(
                        f"the image has {width}x{height} pixels; at most {most} are accepted",
                        field="file",
                    )
                image.verify()
    except BadRequest:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadRequest(
            f"the image has too many pixels to decode safely; at most {most} are accepted",
            field="file",
        ) from None
    except Exception:
        raise BadRequest("the file is not a readable PNG or JPEG image", field="file") from None
    if kind not in UPLOAD_FORMATS:
        raise BadRequest("the image must be a PNG or JPEG", field="file")
    return UPLOAD_FORMATS[kind], width, height
