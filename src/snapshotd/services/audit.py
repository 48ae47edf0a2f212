"""The audit log: who created, shared, archived, held, revoked and deleted what, and when.

Each entry is written in the same transaction as the action it records, so the log never claims
an action that was rolled back and never misses one that committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from snapshotd.errors import BadRequest
from snapshotd.store.db import Database
from snapshotd.store.models import AuditEvent, utcnow

SYSTEM = "system"


def record(
    session: Session,
    org_id: str,
    actor: str,
    action: str,
    target_type: str,
    target_id: str,
    **detail: Any,
) -> None:
    """`actor` is the acting user's email, or "system" for the sweeper."""
    session.add(
        AuditEvent(
            org_id=org_id,
            actor=actor,
            action=action,
            target_type=target_type,
            target_id=target_id,
            detail=detail,
            at=utcnow(),
        )
    )


@dataclass(frozen=True)
class AuditPage:
    items: list[AuditEvent]
    next_cursor: str | None


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    def query(
        self,
        org_id: str,
        *,
        action: str | None = None,
        target_id: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> AuditPage:
        """Newest first; `cursor` is the id of the last entry of the previous page."""
        statement = select(AuditEvent).where(AuditEvent.org_id == org_id)
        if action:
            statement = statement.where(AuditEvent.action == action)
        if target_id:
            statement = statement.where(AuditEvent.target_id == target_id)
        if actor:
            statement = statement.where(AuditEvent.actor == actor.strip().lower())
        if since:
            statement = statement.where(AuditEvent.at >= since)
        if cursor:
            if not cursor.startswith("aud_"):
                raise BadRequest("cursor is not one this API handed out", field="cursor")
            statement = statement.where(AuditEvent.id < cursor)
        statement = statement.order_by(AuditEvent.id.desc()).limit(limit + 1)
        with self.db.session() as session:
            items = list(session.scalars(statement))
        more = len(items) > limit
        items = items[:limit]
        return AuditPage(items, items[-1].id if more and items else None)
