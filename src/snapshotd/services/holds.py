"""Archive and legal hold: what a snapshot's owner does to keep it out of sight or out of reach
of expiry and deletion. Each change is audited; doing it twice changes nothing."""

from __future__ import annotations

from snapshotd.services import audit
from snapshotd.services.liveness import live_snapshot
from snapshotd.store.db import Database
from snapshotd.store.models import Snapshot, utcnow


class Holds:
    def __init__(self, db: Database) -> None:
        self.db = db

    def archive(self, org_id: str, snapshot_id: str, *, actor: str, reason: str) -> Snapshot:
        """Hides the snapshot from default listings; it is kept and still readable by id."""
        with self.db.session() as session:
            snapshot = live_snapshot(session, org_id, snapshot_id)
            if snapshot.archived_at is None:
                snapshot.archived_at, snapshot.archived_by = utcnow(), actor
                snapshot.archived_reason = reason
                audit.record(
                    session, org_id, actor, "archived", "snapshot", snapshot_id, reason=reason
                )
            return snapshot

    def unarchive(self, org_id: str, snapshot_id: str, *, actor: str) -> Snapshot:
        with self.db.session() as session:
            snapshot = live_snapshot(session, org_id, snapshot_id)
            if snapshot.archived_at is not None:
                snapshot.archived_at = snapshot.archived_by = snapshot.archived_reason = None
                audit.record(session, org_id, actor, "unarchived", "snapshot", snapshot_id)
            return snapshot

    def hold(self, org_id: str, snapshot_id: str, *, actor: str, reason: str) -> Snapshot:
        """A held snapshot never expires and cannot be deleted until the hold is lifted."""
        with self.db.session() as session:
            snapshot = live_snapshot(session, org_id, snapshot_id)
            if not snapshot.legal_hold:
                snapshot.legal_hold, snapshot.hold_reason = True, reason
                snapshot.held_by, snapshot.held_at = actor, utcnow()
                audit.record(session, org_id, actor, "held", "snapshot", snapshot_id, reason=reason)
            return snapshot

    def release(self, org_id: str, snapshot_id: str, *, actor: str) -> Snapshot:
        """Lifts a hold; a snapshot whose expiry passed meanwhile is gone from this moment."""
        with self.db.session() as session:
            snapshot = live_snapshot(session, org_id, snapshot_id)
            if snapshot.legal_hold:
                snapshot.legal_hold = False
                snapshot.hold_reason = snapshot.held_by = None
                snapshot.held_at = None
                audit.record(session, org_id, actor, "released", "snapshot", snapshot_id)
            return snapshot
