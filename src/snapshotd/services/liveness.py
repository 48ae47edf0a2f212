"""Snapshot liveness: a snapshot past its `expires_at` is gone to every reader before the sweeper
reclaims it, unless it is under legal hold. One rule, in Python and as SQL, so reads, listings and
the sweeper agree on it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from sqlalchemy import ColumnElement, or_
from sqlalchemy.orm import Session

from snapshotd.errors import NotFound
from snapshotd.store.models import Snapshot, utcnow


class Expiring(Protocol):
    @property
    def legal_hold(self) -> bool: ...
    @property
    def expires_at(self) -> datetime | None: ...


def is_live(snapshot: Expiring, now: datetime | None = None) -> bool:
    """A snapshot under legal hold never expires; any other is gone from its `expires_at` on."""
    if snapshot.legal_hold or snapshot.expires_at is None:
        return True
    return snapshot.expires_at > (now or utcnow())


def live_snapshot(session: Session, org_id: str, snapshot_id: str) -> Snapshot:
    """The organization's snapshot if it is live, with its artifacts loaded; else NotFound."""
    snapshot = session.get(Snapshot, snapshot_id)
    if snapshot is None or snapshot.org_id != org_id or not is_live(snapshot):
        raise NotFound(f"no snapshot {snapshot_id}")
    snapshot.artifacts  # noqa: B018 — load before the session closes
    return snapshot


def live_clause(now: datetime) -> ColumnElement[bool]:
    """`is_live` as SQL, for listings and the sweeper."""
    return or_(
        Snapshot.legal_hold.is_(True), Snapshot.expires_at.is_(None), Snapshot.expires_at > now
    )
