"""Evidence about a location's snapshots: PDF records, and what changed since the last capture.

A record is generated on request from the snapshot's stored facts and artifacts (their SHA-256s
included), so it always matches what is kept. Change detection runs after each successful capture
of a location: the share of pixels that differ from the previous capture, a `diff` image, and a
`changed` flag past the location's threshold, with a signed webhook when it changed.
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import Any

from PIL import Image
from sqlalchemy import select

from snapshotd.engines import diff, records
from snapshotd.errors import BadRequest, NotFound
from snapshotd.services import webhooks
from snapshotd.services.locations import Locations
from snapshotd.services.thumbnails import evidence_artifacts
from snapshotd.store.models import Artifact, Location, Snapshot, utcnow


class Evidence:
    def __init__(self, locations: Locations) -> None:
        self.locations = locations
        self.snapshots = locations.snapshots
        self.db = locations.db
        self.settings = locations.settings

    def record(
        self,
        org_id: str,
        location_id: str,
        *,
        snapshot_id: str | None = None,
        at: datetime | None = None,
    ) -> tuple[Snapshot, bytes]:
        """The PDF evidence record of one snapshot, or of the snapshot in force at `at`: the
        location's latest successful capture or upload completed at or before that moment."""
        location = self.locations.get(org_id, location_id)
        if snapshot_id is None:
            with self.db.session() as session:
                found = session.scalar(
                    select(Snapshot.id)
                    .where(
                        Snapshot.org_id == org_id,
                        Snapshot.location_id == location.id,
                        Snapshot.status == "success",
                        Snapshot.completed_at <= (at or utcnow()),
                    )
                    .order_by(Snapshot.completed_at.desc(), Snapshot.id.desc())
                    .limit(1)
                )
            if found is None:
                raise NotFound(f"location {location_id} had no snapshot at {at}")
            snapshot_id = found
        snapshot = self.locations.snapshot(org_id, location_id, snapshot_id)
        if snapshot.status != "success":
            raise BadRequest(f"snapshot {snapshot_id} is {snapshot.status}; it has no record yet")
        image = next((a for a in snapshot.artifacts if a.role == "image"), None)
        data = None
        if image is not None and image.media_type in ("image/png", "image/jpeg"):
            with self.snapshots.blobs.open(image.sha256) as stream:
                data = stream.read()
        rows = [
            (a.role, a.media_type, a.size, a.sha256) for a in evidence_artifacts(snapshot.artifacts)
        ]
        pdf = records.evidence_pdf(
            title=f"Snapshot record: {location.name}",
            facts=evidence_facts(location, snapshot),
            artifacts=rows,
            image=data,
            generated_at=utcnow(),
        )
        return snapshot, pdf

    def compare_with_previous(self, snapshot_id: str) -> dict[str, Any] | None:
        """After a location's capture succeeds: the share of pixels that changed since its
        previous successful capture, a `diff` image artifact, `changed` past the location's
        threshold, and a signed webhook when it changed. The manifest is signed again so it
        lists the diff."""
        with self.db.session() as session:
            snapshot = session.get(Snapshot, snapshot_id)
            if snapshot is None or snapshot.location_id is None or snapshot.status != "success":
                return None
            location = session.get(Location, snapshot.location_id)
            current = _image_of(session, snapshot.id)
            previous = session.scalar(
                select(Snapshot)
                .where(
                    Snapshot.location_id == snapshot.location_id,
                    Snapshot.status == "success",
                    Snapshot.kind == "page",
                    Snapshot.id < snapshot.id,
                )
                .order_by(Snapshot.id.desc())
                .limit(1)
            )
            before = _image_of(session, previous.id) if previous is not None else None
            if location is None or current is None or previous is None or before is None:
                return None
            with self.snapshots.blobs.open(before.sha256) as stream:
                old = stream.read()
            with self.snapshots.blobs.open(current.sha256) as stream:
                new = stream.read()
            difference = diff.compare(old, new)
            change = {
                "previous": previous.id,
                "changed_pixels": difference.changed_pixels,
                "changed_percent": difference.changed_percent,
                "threshold_percent": location.change_threshold,
                "changed": difference.changed_percent > location.change_threshold,
            }
            width, height = Image.open(io.BytesIO(difference.image)).size
            session.add(
                Artifact(
                    snapshot_id=snapshot.id,
                    role="diff",
                    sha256=self.snapshots.blobs.put(difference.image),
                    size=len(difference.image),
                    media_type="image/png",
                    width=width,
                    height=height,
                )
            )
            snapshot.meta = {**(snapshot.meta or {}), "change": change}
            session.flush()
            self.snapshots.seal(session, snapshot)
            if change["changed"] and location.webhook_url:
                webhooks.enqueue_change(
                    session, self.snapshots.queue, snapshot, location, change, self.settings
                )
        return change


def evidence_facts(location: Location, snapshot: Snapshot) -> list[tuple[str, str]]:
    meta = snapshot.meta or {}
    agent = meta.get("user_agent") or {}
    browser, system = agent.get("browser") or {}, agent.get("os") or {}
    viewport = meta.get("viewport") or {}
    tls = meta.get("tls") or {}
    facts = [
        ("Location", f"{location.name} ({location.key})"),
        ("Snapshot", snapshot.id),
        ("Source", snapshot.source or "triggered"),
        ("Page URL", meta.get("requested_url") or snapshot.url or location.capture_url or ""),
        ("Captured", str(meta.get("captured_at") or meta.get("captured_time") or "")),
        ("Final URL", str(meta.get("final_url") or "")),
        ("HTTP status", str(meta.get("http_status") or "")),
        ("Resolved IP", str(meta.get("resolved_ip") or "")),
        ("Viewport", f"{viewport.get('width')} × {viewport.get('height')}" if viewport else ""),
        ("User agent", str(agent.get("string") or "")),
        ("Browser", f"{browser.get('name', '')} {browser.get('version', '')}".strip()),
        ("Operating system", f"{system.get('name', '')} {system.get('version', '')}".strip()),
        ("Device", str(meta.get("device") or meta.get("device_model") or "")),
        ("Selector", str(meta.get("selector") or "")),
        ("TLS subject", str(tls.get("subject") or "")),
        ("TLS issuer", str(tls.get("issuer") or "")),
    ]
    change = meta.get("change")
    if change:
        facts.append(
            (
                "Change since previous",
                f"{change['changed_percent']} % of pixels ({change['previous']})",
            )
        )
    for stamp in meta.get("timestamps") or []:
        facts.append(("Trusted timestamp", f"timestamped by {stamp['tsa']} at {stamp['time']}"))
    if meta.get("timestamp") == "pending":
        facts.append(("Trusted timestamp", "pending: the TSA has not answered yet"))
    return [(label, value) for label, value in facts if value]


def _image_of(session: Any, snapshot_id: str) -> Artifact | None:
    return session.scalar(
        select(Artifact).where(Artifact.snapshot_id == snapshot_id, Artifact.role == "image")
    )
