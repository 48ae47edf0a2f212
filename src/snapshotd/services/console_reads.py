"""Reads the console's location, chart and test pages need beyond what the API services offer.

Every read is scoped by the organization here, and expired snapshots are left out, as everywhere.
Tests are further scoped to the account groups the signed-in user belongs to, as the ThousandEyes
surfaces scope them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Select, select
from sqlalchemy.orm import selectinload

from snapshotd.engines.charts import ChartRenderer
from snapshotd.errors import NotFound
from snapshotd.services.accounts import Principal, account_groups
from snapshotd.services.chart_snapshots import ChartSnapshots
from snapshotd.services.liveness import live_clause
from snapshotd.services.spaces import find_chart
from snapshotd.store.db import Database
from snapshotd.store.models import Agent, ProbeRound, Share, Snapshot, SyntheticTest, utcnow


@dataclass(frozen=True)
class Timeline:
    items: list[Snapshot]  # newest first
    previous: dict[str, str]  # snapshot id -> the id of the capture before it with an image
    older: str | None  # the `before` cursor of the next page, when there is one


def has_image(snapshot: Snapshot) -> bool:
    return any(a.role == "image" and a.media_type.startswith("image/") for a in snapshot.artifacts)


@dataclass(frozen=True)
class Round:
    round_id: int
    agent: str
    state: str
    result: dict[str, object]


class ConsoleReads:
    def __init__(self, db: Database, charts: ChartSnapshots) -> None:
        self.db = db
        self.charts = charts
        self.renderer = ChartRenderer()

    # -- locations --------------------------------------------------------------------------------

    def timeline(
        self, org_id: str, location_id: str, *, before: str = "", limit: int = 20
    ) -> Timeline:
        """A page of the location's live snapshots, newest first, and for each one with an image
        the capture before it that has one too (looking one page ahead), for "compare with
        previous"."""
        query = (
            select(Snapshot)
            .where(
                Snapshot.org_id == org_id,
                Snapshot.location_id == location_id,
                live_clause(utcnow()),
            )
            .options(selectinload(Snapshot.artifacts))
            .order_by(Snapshot.id.desc())
        )
        if before:
            query = query.where(Snapshot.id < before)
        with self.db.session() as session:
            rows = list(session.scalars(query.limit(2 * limit + 1)))
        items = rows[:limit]
        previous: dict[str, str] = {}
        for index, snapshot in enumerate(items):
            if has_image(snapshot):
                earlier = next((s for s in rows[index + 1 :] if has_image(s)), None)
                if earlier is not None:
                    previous[snapshot.id] = earlier.id
        older = items[-1].id if len(rows) > limit else None
        return Timeline(items, previous, older)

    def comparable(self, org_id: str, location_id: str, *, limit: int = 100) -> list[Snapshot]:
        """The location's most recent live captures that have an image, newest first."""
        return [s for s in self.timeline(org_id, location_id, limit=limit).items if has_image(s)]

    # -- charts -----------------------------------------------------------------------------------

    def chart_snapshots(
        self, org_id: str, space_id: int, *, chart_id: int | None = None, limit: int = 24
    ) -> list[Snapshot]:
        """Live chart snapshots taken of the space's charts (or one chart), newest first."""
        query = select(Snapshot).where(
            Snapshot.org_id == org_id,
            Snapshot.kind == "chart",
            Snapshot.options["space_id"].as_integer() == space_id,
            live_clause(utcnow()),
        )
        if chart_id is not None:
            query = query.where(Snapshot.options["chart_id"].as_integer() == chart_id)
        query = query.options(selectinload(Snapshot.artifacts)).order_by(Snapshot.id.desc())
        with self.db.session() as session:
            return list(session.scalars(query.limit(limit)))

    def render_chart(
        self,
        org_id: str,
        space_id: int,
        chart_id: int,
        *,
        seconds: int,
        width: int,
        height: int,
    ) -> bytes:
        """The chart over the last `seconds`, drawn now from stored series by the same reading
        and engine a chart snapshot uses; nothing is stored."""
        with self.db.session() as session:
            chart = find_chart(session, org_id, chart_id, space_id)
            frozen = {"name": chart.name, "type": chart.type, **chart.definition}
        draft = Snapshot(
            org_id=org_id,
            kind="chart",
            options={
                "chart_id": chart_id,
                "space_id": space_id,
                "chart": frozen,
                "duration": seconds,
                "end_time": int(time.time()),
                "width": width,
                "height": height,
            },
        )
        spec, _metadata = self.charts.spec(draft)
        return self.renderer.render(spec)

    # -- synthetic tests --------------------------------------------------------------------------

    def _groups(self, principal: Principal) -> list[int]:
        with self.db.session() as session:
            return [g.id for g in account_groups(session, principal.org_id, principal.user_id)]

    def _tests_query(self, principal: Principal) -> Select[SyntheticTest]:
        return select(SyntheticTest).where(
            SyntheticTest.org_id == principal.org_id,
            SyntheticTest.account_group_id.in_(self._groups(principal)),
            SyntheticTest.saved_event.is_(False),
        )

    def tests_of(self, principal: Principal, *, limit: int = 200) -> list[SyntheticTest]:
        """The tests of the user's account groups (not the copies frozen into snapshots)."""
        query = self._tests_query(principal).order_by(SyntheticTest.id).limit(limit)
        with self.db.session() as session:
            return list(session.scalars(query))

    def synthetic_test(self, principal: Principal, test_id: int) -> SyntheticTest:
        query = self._tests_query(principal).where(SyntheticTest.id == test_id)
        with self.db.session() as session:
            found = session.scalar(query)
        if found is None:
            raise NotFound(f"no test {test_id}")
        return found

    def rounds(self, test_id: int, *, before: int = 0, limit: int = 50) -> list[Round]:
        """The test's rounds, newest first (by round, then agent), before round id `before`."""
        query = (
            select(ProbeRound, Agent.name)
            .outerjoin(Agent, Agent.id == ProbeRound.agent_id)
            .where(ProbeRound.test_id == test_id)
            .order_by(ProbeRound.round_id.desc(), ProbeRound.agent_id)
        )
        if before:
            query = query.where(ProbeRound.round_id < before)
        with self.db.session() as session:
            rows = session.execute(query.limit(limit)).all()
        return [
            Round(
                probe.round_id, name or f"agent {probe.agent_id}", probe.state, probe.result or {}
            )
            for probe, name in rows
        ]

    def window_snapshots(
        self, org_id: str, test_id: int, *, limit: int = 24
    ) -> list[tuple[Snapshot, list[Share]]]:
        """The live `test_window` snapshots frozen from the test, newest first, with their
        shares."""
        query = (
            select(Snapshot)
            .join(SyntheticTest, SyntheticTest.snapshot_id == Snapshot.id)
            .where(
                Snapshot.org_id == org_id,
                SyntheticTest.org_id == org_id,
                SyntheticTest.source_test_id == test_id,
                live_clause(utcnow()),
            )
            .options(selectinload(Snapshot.artifacts))
            .order_by(Snapshot.id.desc())
            .limit(limit)
        )
        with self.db.session() as session:
            found = list(session.scalars(query))
            ids = [s.id for s in found]
            shares = list(
                session.scalars(
                    select(Share)
                    .where(Share.org_id == org_id, Share.snapshot_id.in_(ids))
                    .order_by(Share.created_at.desc())
                )
            )
        by_snapshot: dict[str, list[Share]] = {}
        for share in shares:
            by_snapshot.setdefault(share.snapshot_id, []).append(share)
        return [(s, by_snapshot.get(s.id, [])) for s in found]
