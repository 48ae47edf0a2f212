"""Finding snapshots to look at: the web console's filtered, searchable, paged listing.

Pages are keyed by snapshot id (ids are time-ordered), newest first: `before` asks for the page
of older snapshots, `after` for the page of newer ones, so paging stays cheap however deep it goes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from sqlalchemy import Select, select

from snapshotd.errors import BadRequest
from snapshotd.services.liveness import live_clause
from snapshotd.services.snapshots import KINDS, STATUSES
from snapshotd.store.db import Database
from snapshotd.store.models import Job, Location, Snapshot, utcnow

ARCHIVED = ("exclude", "include", "only")
MAX_SEARCH = 500


@dataclass(frozen=True)
class Filters:
    kind: str = ""
    status: str = ""
    location: str = ""
    since: date | None = None
    until: date | None = None
    search: str = ""
    archived: str = "exclude"

    def check(self) -> None:
        if self.kind and self.kind not in KINDS:
            raise BadRequest(f"kind must be one of {', '.join(KINDS)}", field="kind")
        if self.status and self.status not in STATUSES:
            raise BadRequest(f"status must be one of {', '.join(STATUSES)}", field="status")
        if self.archived not in ARCHIVED:
            raise BadRequest(f"archived must be one of {', '.join(ARCHIVED)}", field="archived")
        if len(self.search) > MAX_SEARCH:
            raise BadRequest(f"search is at most {MAX_SEARCH} characters", field="q")
        if self.since and self.until and self.since > self.until:
            raise BadRequest("the start date is after the end date", field="since")


@dataclass
class Listing:
    items: list[Snapshot]
    jobs: dict[str, Job] = field(default_factory=dict)
    older: str | None = None
    newer: str | None = None


def _filtered(org_id: str, filters: Filters) -> Select[Snapshot]:
    query = select(Snapshot).where(Snapshot.org_id == org_id, live_clause(utcnow()))
    if filters.archived == "exclude":
        query = query.where(Snapshot.archived_at.is_(None))
    elif filters.archived == "only":
        query = query.where(Snapshot.archived_at.is_not(None))
    if filters.kind:
        query = query.where(Snapshot.kind == filters.kind)
    if filters.status:
        query = query.where(Snapshot.status == filters.status)
    if filters.location:
        query = query.where(Snapshot.location_id == filters.location)
    if filters.since:
        query = query.where(Snapshot.created_at >= _midnight(filters.since))
    if filters.until:
        query = query.where(Snapshot.created_at < _midnight(filters.until + timedelta(days=1)))
    if filters.search:
        query = query.where(Snapshot.url.icontains(filters.search, autoescape=True))
    return query


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min).replace(tzinfo=utcnow().tzinfo)


class Browse:
    def __init__(self, db: Database) -> None:
        self.db = db

    def search(
        self,
        org_id: str,
        filters: Filters,
        *,
        before: str = "",
        after: str = "",
        limit: int = 24,
    ) -> Listing:
        """One page of the organization's snapshots matching `filters`, with their jobs."""
        filters.check()
        query = _filtered(org_id, filters)
        if after:
            query = query.where(Snapshot.id > after).order_by(Snapshot.id.asc())
        else:
            if before:
                query = query.where(Snapshot.id < before)
            query = query.order_by(Snapshot.id.desc())
        with self.db.session() as session:
            rows = list(session.scalars(query.limit(limit + 1)))
            more = len(rows) > limit
            rows = rows[:limit]
            if after:
                rows.reverse()
            for row in rows:
                row.artifacts  # noqa: B018 — load before the session closes
            job_ids = [row.job_id for row in rows if row.job_id]
            jobs = {job.id: job for job in session.scalars(select(Job).where(Job.id.in_(job_ids)))}
        listing = Listing(rows, jobs)
        if rows and after:
            listing.older, listing.newer = rows[-1].id, rows[0].id if more else None
        elif rows:
            listing.older = rows[-1].id if more else None
            listing.newer = rows[0].id if before else None
        return listing

    def location_choices(self, org_id: str) -> list[tuple[str, str]]:
        """(id, name) of the organization's locations, for a filter's choices."""
        with self.db.session() as session:
            rows = session.execute(
                select(Location.id, Location.name)
                .where(Location.org_id == org_id)
                .order_by(Location.name)
            ).all()
        return [(row.id, row.name) for row in rows]
