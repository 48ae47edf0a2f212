"""Synthetic tests: their settings, the scheduler that starts their rounds, and the rounds' results.

A round is identified by the epoch second its interval started at, so every worker computes the
same round id. The scheduler inserts (test, round, agent) with the unique key doing the
arbitration, and queues a job for that agent only in the same transaction: one round per test per
interval per agent, however many workers schedule. A new or re-enabled test's current round is due
at once, so its first result comes within seconds.

Tests belong to an account group (ThousandEyes' `aid`); every read and write is scoped by the
organization and the group. A test's URL is checked for its form when it is saved; whether its
address may be reached is decided by the egress guard each round, and a refused round is recorded
as an error, like any other failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from snapshotd.engines.egress import EgressPolicy
from snapshotd.errors import BadRequest, InvalidURL, NotFound
from snapshotd.services import agents, audit, dns_api_tests, network_tests
from snapshotd.services.network_tests import NETWORK_JOB, NETWORK_TYPES
from snapshotd.store.db import Database, insert_or_merge
from snapshotd.store.models import Agent, ProbeRound, SyntheticTest, utcnow
from snapshotd.store.queue import Claim, JobQueue

TYPES = ("http-server", "page-load", *dns_api_tests.KINDS)
INTERVALS = (60, 120, 300, 600, 900, 1800, 3600)
PROBE_JOB = "probe"


class ProbeSettings(BaseModel):
    """How a round probes a test's URL, in snapshotd's own names: a dialect translates its wire
    names into these, and the worker reads nothing else. Stored in a test's `config` under these
    names, beside the settings a dialect keeps for its clients without snapshotd acting on them.

    Built with only some fields (an update), it sets just those: `model_fields_set` says which."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    page_load_time_limit: int = 10
    http_time_limit: int = 5
    follow_redirects: bool = True
    desired_status_code: str = "default"
    verify_certificate: bool = False
    request_method: Literal["get", "post"] = "get"
    headers: tuple[str, ...] = ()
    post_body: str | None = None
    user_agent: str | None = None
    network_measurements: bool = True
    protocol: Literal["tcp", "icmp", "udp"] = "tcp"

    @classmethod
    def of(cls, test: SyntheticTest) -> ProbeSettings:
        return cls.model_validate(test.config or {})

    def given(self) -> dict[str, Any]:
        """The fields set when this was built, as stored."""
        return self.model_dump(mode="json", exclude_unset=True)


@dataclass
class TestFields:
    """What a create or update sets; None leaves a field as it is (an update) or defaulted.
    `extra` holds settings a dialect keeps and returns for its clients; snapshotd stores them
    as given and never reads them."""

    __test__ = False  # not a pytest test class, despite its name

    name: str | None = None
    url: str | None = None
    interval: int | None = None
    enabled: bool | None = None
    description: str | None = None
    agent_ids: list[int] | None = None
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    extra: dict[str, Any] = field(default_factory=dict)
    # A DNS server or API test's own settings that this request sets (services/dns_api_tests.py).
    settings: dict[str, Any] | None = None


@dataclass(frozen=True)
class Scope:
    """Whose tests: an organization's account group."""

    org_id: str
    group_id: int


def round_of(moment: float, interval: int) -> int:
    """The id of the round `moment` falls in: the epoch second its interval started."""
    return int(moment) - int(moment) % interval


class Synthetic:
    def __init__(self, db: Database, queue: JobQueue, policy: EgressPolicy) -> None:
        self.db = db
        self.queue = queue
        self.policy = policy
        self.agents = agents.Agents(db)

    # -- tests --------------------------------------------------------------------------------

    def _check(self, fields: TestFields, kind: str, *, creating: bool) -> None:
        if creating:
            for name in dns_api_tests.REQUIRED.get(kind, ("url", "interval")):
                if getattr(fields, name) is None:
                    raise BadRequest(f"{name} is required", field=name)
            if not fields.agent_ids:
                raise BadRequest("name at least one agent to run the test", field="agents")
        if fields.interval is not None and fields.interval not in INTERVALS:
            allowed = ", ".join(map(str, INTERVALS))
            raise BadRequest(f"interval must be one of {allowed} seconds", field="interval")
        if fields.url is not None and kind in NETWORK_TYPES:
            network_tests.check_target(self.policy, fields.url)
        elif fields.url is not None:
            try:
                self.policy.check_url(fields.url)
            except InvalidURL as error:
                raise BadRequest(error.detail, field="url") from None
            except BadRequest:
                pass  # an address the guard refuses: each round records the refusal
        if fields.agent_ids is not None:
            unknown = set(fields.agent_ids) - self.agents.known_ids()
            if unknown:
                listed = ", ".join(str(a) for a in sorted(unknown))
                raise BadRequest(f"no agent with id {listed}", field="agents")

    def create(self, scope: Scope, kind: str, fields: TestFields, *, actor: str) -> SyntheticTest:
        self._check(fields, kind, creating=True)
        now = utcnow()
        with self.db.session() as session:
            test = SyntheticTest(
                org_id=scope.org_id,
                account_group_id=scope.group_id,
                type=kind,
                created_by=actor,
                created_at=now,
                modified_by=actor,
                modified_at=now,
                enabled=True,
                name="",
                url="",
                description="",
                config={},
            )
            _apply(test, fields)
            dns_api_tests.settle(self.policy, test)
            session.add(test)
            session.flush()
            audit.record(session, scope.org_id, actor, "created", "test", str(test.id), type=kind)
        return test

    def get(self, scope: Scope, test_id: int, kind: str | None = None) -> SyntheticTest:
        with self.db.session() as session:
            return _test(session, scope, test_id, kind)

    def find(self, scope: Scope, kind: str | None = None) -> list[SyntheticTest]:
        query = select(SyntheticTest).where(
            SyntheticTest.org_id == scope.org_id, SyntheticTest.account_group_id == scope.group_id
        )
        if kind is not None:
            query = query.where(SyntheticTest.type == kind)
        with self.db.session() as session:
            return list(session.scalars(query.order_by(SyntheticTest.id)))

    def update(
        self, scope: Scope, test_id: int, kind: str, fields: TestFields, *, actor: str
    ) -> SyntheticTest:
        self._check(fields, kind, creating=False)
        with self.db.session() as session:
            test = _test(session, scope, test_id, kind)
            if test.saved_event:
                raise BadRequest("a snapshot's saved test cannot be changed", field="testId")
            _apply(test, fields)
            dns_api_tests.settle(self.policy, test)
            test.modified_by, test.modified_at = actor, utcnow()
            audit.record(session, scope.org_id, actor, "updated", "test", str(test_id))
        return test

    def delete(self, scope: Scope, test_id: int, kind: str, *, actor: str) -> None:
        with self.db.session() as session:
            test = _test(session, scope, test_id, kind)
            session.execute(delete(ProbeRound).where(ProbeRound.test_id == test.id))
            session.delete(test)
            audit.record(session, scope.org_id, actor, "deleted", "test", str(test_id))

    # -- rounds -------------------------------------------------------------------------------

    def schedule(self, agent_id: int, now: float) -> int:
        """Queues every round now due on this agent that nobody has queued yet."""
        with self.db.session() as session:
            tests = session.execute(
                select(
                    SyntheticTest.id,
                    SyntheticTest.interval,
                    SyntheticTest.agent_ids,
                    SyntheticTest.type,
                ).where(SyntheticTest.enabled.is_(True), SyntheticTest.saved_event.is_(False))
            ).all()
            kinds = {  # each test on this agent, with the job kind its rounds run as
                test_id: NETWORK_JOB if kind in NETWORK_TYPES else PROBE_JOB
                for test_id, _, agent_ids, kind in tests
                if agent_id in (agent_ids or [])
            }
            due = {
                (test_id, round_of(now, interval))
                for test_id, interval, *_ in tests
                if test_id in kinds
            }
            if not due:
                return 0
            queued = set(
                session.execute(
                    select(ProbeRound.test_id, ProbeRound.round_id).where(
                        ProbeRound.agent_id == agent_id,
                        ProbeRound.test_id.in_({test_id for test_id, _ in due}),
                        ProbeRound.round_id.in_({round_id for _, round_id in due}),
                    )
                ).all()
            )
            rows = [
                {"test_id": t, "round_id": r, "agent_id": agent_id, "state": "queued"}
                for t, r in sorted(due - {tuple(row) for row in queued})
            ]
            if not rows:
                return 0
            inserted = session.execute(
                insert_or_merge(session, ProbeRound)
                .values(rows)
                .on_conflict_do_nothing(index_elements=["test_id", "round_id", "agent_id"])
                .returning(ProbeRound.id, ProbeRound.test_id)
            ).all()
            for round_pk, test_id in inserted:
                job = kinds[test_id]
                self.queue.enqueue(session, job, {"round": round_pk}, agent_id=agent_id)
            return len(inserted)

    def start_round(self, claim: Claim) -> tuple[ProbeRound, SyntheticTest] | None:
        """Marks the claimed round working; None when it or its test is gone. Fenced by the
        lease (LeaseLost), so a worker frozen past it cannot reopen a round another finished."""
        with self.db.session() as session:
            self.queue.hold(session, claim)
            probe = session.get(ProbeRound, claim.payload["round"])
            test = session.get(SyntheticTest, probe.test_id) if probe else None
            if probe is None or test is None:
                return None
            probe.state = "working"
            return probe, test

    def finish_round(self, claim: Claim, result: Mapping[str, Any]) -> None:
        with self.db.session() as session:
            self.queue.complete(session, claim)
            probe = session.get(ProbeRound, claim.payload["round"])
            if probe is not None:
                probe.state, probe.result = "done", dict(result)

    def results(
        self,
        scope: Scope,
        test_id: int,
        kind: str,
        *,
        start: int | None,
        end: int,
        after: int = 0,
        limit: int = 100,
    ) -> tuple[SyntheticTest, list[ProbeRound], bool]:
        """Finished rounds in [start, end] (the latest round when `start` is None), in round
        order after the round row `after`; and whether more follow."""
        with self.db.session() as session:
            test = _test(session, scope, test_id, kind)
            query = select(ProbeRound).where(
                ProbeRound.test_id == test.id, ProbeRound.state == "done", ProbeRound.id > after
            )
            if start is None:
                latest = (
                    select(ProbeRound.round_id)
                    .where(ProbeRound.test_id == test.id, ProbeRound.state == "done")
                    .order_by(ProbeRound.round_id.desc())
                    .limit(1)
                    .scalar_subquery()
                )
                query = query.where(ProbeRound.round_id == latest)
            else:
                query = query.where(ProbeRound.round_id >= start, ProbeRound.round_id <= end)
            rows = list(session.scalars(query.order_by(ProbeRound.id).limit(limit + 1)))
        return test, rows[:limit], len(rows) > limit

    def saved_rounds(self, test_id: int) -> list[tuple[ProbeRound, str]]:
        """A saved test's frozen rounds with their agents' names, for a share page (whose link
        was checked before)."""
        with self.db.session() as session:
            rows = session.execute(
                select(ProbeRound, Agent.name)
                .outerjoin(Agent, Agent.id == ProbeRound.agent_id)
                .where(ProbeRound.test_id == test_id)
                .order_by(ProbeRound.round_id, ProbeRound.agent_id)
            ).all()
        return [(probe, name or f"agent {probe.agent_id}") for probe, name in rows]


def _apply(test: SyntheticTest, fields: TestFields) -> None:
    for name in ("name", "url", "interval", "description"):
        value = getattr(fields, name)
        if value is not None:
            setattr(test, name, value)
    if fields.agent_ids is not None:
        test.agent_ids = sorted(set(fields.agent_ids))
    if fields.enabled is not None:
        test.enabled = fields.enabled
    changes = {**fields.probe.given(), **fields.extra}
    if changes:
        test.config = {**(test.config or {}), **changes}
    if fields.settings is not None:
        dns_api_tests.merge(test, fields.settings)


def _test(session: Session, scope: Scope, test_id: int, kind: str | None) -> SyntheticTest:
    test = session.get(SyntheticTest, test_id)
    if (
        test is None
        or test.org_id != scope.org_id
        or test.account_group_id != scope.group_id
        or (kind is not None and test.type != kind)
    ):
        raise NotFound(f"no test {test_id}")
    return test
