"""The synthetic test scheduler against SQLite and PostgreSQL: rounds are aligned to the interval,
queued once per test, round and agent however many workers schedule, only on the agents a test
names, and never for disabled or saved tests."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select, update

from snapshotd.config import Settings
from snapshotd.engines.egress import EgressPolicy
from snapshotd.errors import BadRequest
from snapshotd.services import agents
from snapshotd.services.accounts import Accounts, authenticate
from snapshotd.services.graph import make_queue
from snapshotd.services.synthetic import ProbeSettings, Scope, Synthetic, TestFields, round_of
from snapshotd.store.db import Database
from snapshotd.store.models import Job, ProbeRound
from snapshotd.store.queue import LeaseLost

NOW = 1_800_000_030.0


@pytest.fixture
def synthetic(any_db: Database, settings: Settings) -> Synthetic:
    return Synthetic(any_db, make_queue(settings, any_db), EgressPolicy(["127.0.0.1/32"]))


def scope_of(db: Database) -> Scope:
    token = Accounts(db).create_token(org="acme", email="ops@acme.test", role="admin")
    with db.session() as session:
        principal = authenticate(session, token)
    return Scope(principal.org_id, Accounts(db).account_group_for(principal, None).id)


def rounds(db: Database) -> list[tuple[int, int, int]]:
    with db.session() as session:
        rows = session.execute(select(ProbeRound.test_id, ProbeRound.round_id, ProbeRound.agent_id))
        return sorted(tuple(row) for row in rows)


def jobs_for(db: Database, agent_id: int) -> int:
    with db.session() as session:
        query = select(func.count()).select_from(Job).where(Job.agent_id == agent_id)
        return session.scalar(query) or 0


def test_rounds_are_aligned_and_queued_once_per_agent(
    synthetic: Synthetic, any_db: Database
) -> None:
    here = agents.Agents(any_db).register("host-a", location="Local", country_id="")
    there = agents.Agents(any_db).register("host-b", location="Elsewhere", country_id="")
    scope = scope_of(any_db)
    fields = TestFields(url="http://127.0.0.1/", interval=300, agent_ids=[here.id, there.id])
    test = synthetic.create(scope, "http-server", fields, actor="ops@acme.test")

    assert round_of(NOW, 300) == 1_800_000_000
    assert synthetic.schedule(here.id, NOW) == 1
    assert synthetic.schedule(here.id, NOW + 200) == 0  # same round
    assert synthetic.schedule(there.id, NOW) == 1  # each agent runs it
    assert synthetic.schedule(here.id, NOW + 300) == 1  # the next round
    assert rounds(any_db) == [
        (test.id, 1_800_000_000, here.id),
        (test.id, 1_800_000_000, there.id),
        (test.id, 1_800_000_300, here.id),
    ]
    # Each round's job is for its agent only.
    assert jobs_for(any_db, here.id) == 2 and jobs_for(any_db, there.id) == 1
    assert synthetic.queue.claim("worker-of-b", there.id) is not None
    assert synthetic.queue.claim("worker-of-b", there.id) is None


def test_many_schedulers_queue_a_round_once(synthetic: Synthetic, any_db: Database) -> None:
    here = agents.Agents(any_db).register("host-a", location="Local", country_id="")
    scope = scope_of(any_db)
    for index in range(20):
        fields = TestFields(url=f"http://127.0.0.1/{index}", interval=60, agent_ids=[here.id])
        synthetic.create(scope, "http-server", fields, actor="ops@acme.test")
    barrier = threading.Barrier(4)
    queued: list[int] = []

    def schedule() -> None:
        barrier.wait()
        queued.append(synthetic.schedule(here.id, NOW))

    threads = [threading.Thread(target=schedule) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(queued) == 20 and len(rounds(any_db)) == 20
    assert jobs_for(any_db, here.id) == 20


def test_disabled_saved_and_other_agents_tests_are_not_scheduled(
    synthetic: Synthetic, any_db: Database
) -> None:
    here = agents.Agents(any_db).register("host-a", location="Local", country_id="")
    there = agents.Agents(any_db).register("host-b", location="Local", country_id="")
    scope = scope_of(any_db)
    off = synthetic.create(
        scope,
        "http-server",
        TestFields(url="http://127.0.0.1/", interval=60, enabled=False, agent_ids=[here.id]),
        actor="a",
    )
    synthetic.create(
        scope,
        "page-load",
        TestFields(url="http://127.0.0.1/", interval=60, agent_ids=[there.id]),
        actor="a",
    )
    assert synthetic.schedule(here.id, NOW) == 0
    synthetic.update(scope, off.id, "http-server", TestFields(enabled=True), actor="a")
    assert synthetic.schedule(here.id, NOW) == 1  # re-enabled: its current round at once


def test_test_settings_are_checked(synthetic: Synthetic, any_db: Database) -> None:
    here = agents.Agents(any_db).register("host-a", location="Local", country_id="")
    scope = scope_of(any_db)
    cases = [
        (TestFields(url="http://127.0.0.1/", interval=61, agent_ids=[here.id]), "interval"),
        (TestFields(url="ftp://127.0.0.1/", interval=60, agent_ids=[here.id]), "url"),
        (TestFields(url="http://127.0.0.1/", interval=60, agent_ids=[]), "agents"),
        (TestFields(url="http://127.0.0.1/", interval=60, agent_ids=[here.id + 99]), "agents"),
    ]
    for fields, field in cases:
        with pytest.raises(BadRequest) as refused:
            synthetic.create(scope, "http-server", fields, actor="a")
        assert refused.value.field == field
    # An address the egress guard refuses is accepted: each round records the refusal.
    private = TestFields(url="http://10.1.2.3/", interval=60, agent_ids=[here.id])
    assert synthetic.create(scope, "http-server", private, actor="a").id


def test_a_round_whose_lease_was_lost_is_not_started(
    synthetic: Synthetic, any_db: Database
) -> None:
    here = agents.Agents(any_db).register("host-a", location="Local", country_id="")
    fields = TestFields(url="http://127.0.0.1/", interval=300, agent_ids=[here.id])
    synthetic.create(scope_of(any_db), "http-server", fields, actor="ops@acme.test")
    assert synthetic.schedule(here.id, NOW) == 1
    claim = synthetic.queue.claim("frozen-worker", here.id)
    assert claim is not None
    # The lease ran out and the reaper handed the job back to the queue.
    with any_db.session() as session:
        session.execute(update(Job).where(Job.id == claim.job_id).values(state="queued"))
    with pytest.raises(LeaseLost):
        synthetic.start_round(claim)
    with any_db.session() as session:
        assert session.scalars(select(ProbeRound.state)).all() == ["queued"]


def test_probe_settings_are_kept_and_an_update_changes_only_those_given(
    synthetic: Synthetic, any_db: Database
) -> None:
    here = agents.Agents(any_db).register("host-a", location="Local", country_id="")
    scope = scope_of(any_db)
    probe = ProbeSettings(http_time_limit=9, headers=("X-A: 1",))
    fields = TestFields(url="http://127.0.0.1/", interval=60, agent_ids=[here.id], probe=probe)
    test = synthetic.create(scope, "http-server", fields, actor="a")
    assert ProbeSettings.of(test) == probe
    change = TestFields(probe=ProbeSettings(follow_redirects=False))
    synthetic.update(scope, test.id, "http-server", change, actor="a")
    assert ProbeSettings.of(synthetic.get(scope, test.id)) == ProbeSettings(
        http_time_limit=9, headers=("X-A: 1",), follow_redirects=False
    )
