"""Test snapshots: a synthetic test and every round in a window, frozen into a saved test.

The saved test is a copy (its own id, `source_test_id`, the window's first and last round ids), and
the rounds are copied with it in one INSERT … SELECT, so later rounds, edits or deleting the source
change nothing in it. The snapshot is also a native `test_window` snapshot with a chart of the
window as its image, and a share link: public, or private to the organization (ThousandEyes'
"saved event"). It expires like any snapshot (30 days by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import insert, literal, select
from sqlalchemy.orm import Session

from snapshotd.engines.charts import ChartRenderer, ChartSpec, Series
from snapshotd.errors import BadRequest, NotFound
from snapshotd.services import audit, dns_api_tests, network_tests
from snapshotd.services.accounts import Principal
from snapshotd.services.shares import Shares
from snapshotd.services.snapshots import Snapshots
from snapshotd.services.synthetic import Scope, round_of
from snapshotd.store.models import (
    Agent,
    Artifact,
    ProbeRound,
    Share,
    Snapshot,
    SyntheticTest,
    utcnow,
)

WINDOW_HOURS = (1, 2, 4, 6, 12, 24, 48)
CLOCK_SKEW = timedelta(seconds=60)


@dataclass(frozen=True)
class Names:
    """The request's own field names, for errors that say which field was wrong."""

    display_name: str = "displayName"
    start: str = "startDate"
    end: str = "endDate"


@dataclass
class Frozen:
    test: SyntheticTest
    source: SyntheticTest
    snapshot: Snapshot
    share: Share


class TestWindows:
    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, snapshots: Snapshots, shares: Shares) -> None:
        self.snapshots = snapshots
        self.shares = shares
        self.renderer = ChartRenderer()

    def create(
        self,
        principal: Principal,
        scope: Scope,
        test_id: int,
        *,
        display_name: object,
        start: datetime,
        end: datetime,
        public: bool,
        surface: str,
        names: Names = Names(),
    ) -> Frozen:
        if not isinstance(display_name, str) or not display_name.strip():
            raise BadRequest("is required", field=names.display_name)
        if end > utcnow() + CLOCK_SKEW:
            raise BadRequest("must be now or in the past", field=names.end)
        hours = (end - start).total_seconds() / 3600
        if hours not in WINDOW_HOURS:
            allowed = ", ".join(map(str, WINDOW_HOURS))
            raise BadRequest(
                f"the window must be exactly {allowed} hours long (this one is {hours:g} h)",
                field=names.start,
            )
        db = self.snapshots.db
        with db.session() as session:
            source = session.get(SyntheticTest, test_id)
            if (
                source is None
                or source.org_id != scope.org_id
                or source.account_group_id != scope.group_id
            ):
                raise NotFound(f"no test {test_id}")
            first = round_of(start.timestamp(), source.interval)
            last = round_of(end.timestamp(), source.interval)
            copy = SyntheticTest(
                org_id=source.org_id,
                account_group_id=source.account_group_id,
                type=source.type,
                name=display_name.strip(),
                url=source.url,
                interval=source.interval,
                enabled=False,
                description=source.description,
                agent_ids=list(source.agent_ids or []),
                config=dict(source.config or {}),
                created_by=principal.email,
                modified_by=principal.email,
                saved_event=True,
                source_test_id=source.id,
                start_round=first,
                end_round=last,
            )
            session.add(copy)
            session.flush()
            columns = ("test_id", "round_id", "agent_id", "state", "result", "created_at")
            picked = select(
                literal(copy.id),
                ProbeRound.round_id,
                ProbeRound.agent_id,
                ProbeRound.state,
                ProbeRound.result,
                ProbeRound.created_at,
            ).where(
                ProbeRound.test_id == source.id,
                ProbeRound.state == "done",
                ProbeRound.round_id >= first,
                ProbeRound.round_id <= last,
            )
            session.execute(insert(ProbeRound).from_select(columns, picked))
            snapshot = self.snapshots.create(
                session,
                scope.org_id,
                "test_window",
                None,
                options={
                    "test_id": copy.id,
                    "source_test_id": source.id,
                    "type": source.type,
                    "display_name": copy.name,
                    "start_round": first,
                    "end_round": last,
                    "public": public,
                },
                surface=surface,
                actor=principal.email,
            )
            copy.snapshot_id = snapshot.id
            png = self.renderer.render(self._chart(session, copy))
            digest = self.snapshots.blobs.put(png)
            session.add(
                Artifact(
                    snapshot_id=snapshot.id,
                    role="image",
                    sha256=digest,
                    size=len(png),
                    media_type="image/png",
                    width=800,
                    height=400,
                )
            )
            audit.record(session, scope.org_id, principal.email, "snapshot", "test", str(test_id))
        share = self.shares.create(principal, snapshot.id, public=public)
        return Frozen(copy, source, snapshot, share)

    def _chart(self, session: Session, test: SyntheticTest) -> ChartSpec:
        rows = session.execute(
            select(ProbeRound.agent_id, ProbeRound.round_id, ProbeRound.result)
            .where(ProbeRound.test_id == test.id)
            .order_by(ProbeRound.agent_id, ProbeRound.round_id)
        ).all()
        names = dict(session.execute(select(Agent.id, Agent.name)).all())
        assert test.start_round is not None and test.end_round is not None
        if test.type in network_tests.NETWORK_TYPES:
            named = [(names.get(a, f"agent {a}"), r, result) for a, r, result in rows]
            span = (float(test.start_round), float(test.end_round + test.interval))
            return network_tests.chart(test.name, *span, named)
        by_line: dict[tuple[int, str], list[tuple[int, float]]] = {}
        available = 0
        for agent_id, round_id, result in rows:
            if result.get("error_type") is None:
                available += 1
            for label, measured in dns_api_tests.measures(test.type, result):
                by_line.setdefault((agent_id, label), []).append((round_id, measured))
        lines = [
            Series(
                " — ".join(filter(None, (names.get(agent_id, f"agent {agent_id}"), label))),
                *_arrays(points),
            )
            for (agent_id, label), points in by_line.items()
        ]
        share = f"{100 * available / len(rows):.1f}% available" if rows else "no rounds"
        measured_as = dns_api_tests.CHART_TITLES.get(test.type, "response time (ms)")
        return ChartSpec(
            "line",
            f"{test.name} — {measured_as}, {share}",
            float(test.start_round),
            float(test.end_round + test.interval),
            lines,
            y_label="ms",
        )


def _arrays(points: list[tuple[int, float]]) -> tuple[np.ndarray, np.ndarray]:
    array = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return array[:, 0], array[:, 1]
