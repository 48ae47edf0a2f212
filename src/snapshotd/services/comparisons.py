"""Comparing any two captures of a location: the share of pixels that changed, and where.

A pair that change detection already compared (the later capture's recorded `change` names the
earlier one) is answered from what it stored, so the console shows exactly the figure the API
reported. Any other pair is compared on request by the same diff engine, and nothing is stored.
"""

from __future__ import annotations

from dataclasses import dataclass

from snapshotd.engines import diff
from snapshotd.errors import BadRequest
from snapshotd.services.locations import Locations
from snapshotd.store.blobs import BlobStore
from snapshotd.store.models import Artifact, Snapshot


@dataclass(frozen=True)
class Comparison:
    before: Snapshot
    after: Snapshot
    changed_percent: float
    changed_pixels: int | None
    image: bytes  # PNG: `after` washed out, changed pixels red
    recorded: bool  # True when the figure is the one stored at capture time


def _image(snapshot: Snapshot, role: str = "image") -> Artifact | None:
    return next((a for a in snapshot.artifacts if a.role == role), None)


class Comparisons:
    def __init__(self, locations: Locations, blobs: BlobStore) -> None:
        self.locations = locations
        self.blobs = blobs

    def compare(self, org_id: str, location_id: str, before_id: str, after_id: str) -> Comparison:
        """Both snapshots must be the location's, live and with an image; NotFound otherwise (for
        another organization's ids too), BadRequest when one has no image to compare."""
        before = self.locations.snapshot(org_id, location_id, before_id)
        after = self.locations.snapshot(org_id, location_id, after_id)
        images = []
        for name, snapshot in (("a", before), ("b", after)):
            artifact = _image(snapshot)
            if artifact is None or not artifact.media_type.startswith("image/"):
                raise BadRequest(f"snapshot {snapshot.id} has no image to compare", field=name)
            images.append(artifact)
        change = (after.meta or {}).get("change") or {}
        stored = _image(after, "diff")
        if change.get("previous") == before.id and stored is not None:
            return Comparison(
                before,
                after,
                float(change["changed_percent"]),
                change.get("changed_pixels"),
                self._read(stored),
                recorded=True,
            )
        try:
            found = diff.compare(self._read(images[0]), self._read(images[1]))
        except ValueError as error:
            raise BadRequest(str(error)) from None
        return Comparison(
            before, after, found.changed_percent, found.changed_pixels, found.image, recorded=False
        )

    def _read(self, artifact: Artifact) -> bytes:
        with self.blobs.open(artifact.sha256) as stream:
            return stream.read()
