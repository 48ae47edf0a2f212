"""Agent-to-server tests in the synthetic tests service, on both metadata databases: their target
is checked when saved, and their rounds are queued as network jobs, which a claim for network
jobs finds and a claim for other kinds does not."""

from __future__ import annotations

import pytest

from snapshotd.config import Settings
from snapshotd.engines.egress import EgressPolicy
from snapshotd.errors import BadRequest
from snapshotd.services import agents, network_tests
from snapshotd.services.graph import make_queue
from snapshotd.services.synthetic import PROBE_JOB, Synthetic, TestFields
from snapshotd.store.db import Database
from tests.services.test_synthetic import NOW, scope_of


@pytest.fixture
def synthetic(any_db: Database, settings: Settings) -> Synthetic:
    return Synthetic(any_db, make_queue(settings, any_db), EgressPolicy(["127.0.0.1/32"]))


def test_network_rounds_are_queued_as_network_jobs(synthetic: Synthetic, any_db: Database) -> None:
    here = agents.Agents(any_db).register("host-a", location="Local", country_id="")
    scope = scope_of(any_db)
    network = synthetic.create(
        scope,
        "agent-to-server",
        TestFields(url="127.0.0.1:9", interval=60, agent_ids=[here.id]),
        actor="ops@acme.test",
    )
    web = synthetic.create(
        scope,
        "http-server",
        TestFields(url="http://127.0.0.1/", interval=60, agent_ids=[here.id]),
        actor="ops@acme.test",
    )
    assert synthetic.schedule(here.id, NOW) == 2
    claimed = synthetic.queue.claim("w", here.id, (network_tests.NETWORK_JOB,))
    assert claimed is not None and claimed.kind == network_tests.NETWORK_JOB
    started = synthetic.start_round(claimed)
    assert started is not None and started[1].id == network.id
    assert synthetic.queue.claim("w", here.id, (network_tests.NETWORK_JOB,)) is None
    other = synthetic.queue.claim("w", here.id, (PROBE_JOB,))
    assert other is not None
    started_web = synthetic.start_round(other)
    assert started_web is not None and started_web[1].id == web.id


def test_a_refused_literal_target_is_a_bad_request(synthetic: Synthetic, any_db: Database) -> None:
    here = agents.Agents(any_db).register("host-a", location="Local", country_id="")
    scope = scope_of(any_db)
    for target in ("10.1.2.3:80", "[::1]:80", "169.254.169.254:80"):
        with pytest.raises(BadRequest) as refused:
            synthetic.create(
                scope,
                "agent-to-server",
                TestFields(url=target, interval=60, agent_ids=[here.id]),
                actor="ops@acme.test",
            )
        assert refused.value.field == "server"
    allowed = synthetic.create(
        scope,
        "agent-to-server",
        TestFields(url="example.org:443", interval=60, agent_ids=[here.id]),
        actor="ops@acme.test",
    )
    assert network_tests.host_port(allowed.url) == ("example.org", 443)
