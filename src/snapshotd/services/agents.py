"""Agents: the worker hosts that run synthetic test rounds.

Every worker process registers its host when it starts (one row per host name, shared by all the
workers on it) and renews `last_seen_at` while it runs. An agent seen within ONLINE_WITHIN is
online. Agents serve every organization, like a monitoring vendor's cloud agents.
"""

from __future__ import annotations

import socket
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from snapshotd.store.db import Database
from snapshotd.store.models import Agent, utcnow

ONLINE_WITHIN = timedelta(seconds=60)


def host_addresses() -> list[str]:
    """This host's own addresses, as far as the resolver knows them (best effort)."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None)
    except OSError:
        return []
    return sorted({str(info[4][0]) for info in infos})


class Agents:
    def __init__(self, db: Database) -> None:
        self.db = db

    def register(self, name: str, *, location: str, country_id: str) -> Agent:
        """The agent for host `name`, created on first start; its details and last-seen time are
        refreshed on every start."""
        now = utcnow()
        for _attempt in range(2):
            try:
                with self.db.session() as session:
                    agent = session.scalar(select(Agent).where(Agent.name == name))
                    if agent is None:
                        agent = Agent(name=name, created_at=now)
                        session.add(agent)
                    agent.location, agent.country_id = location, country_id
                    agent.ip_addresses, agent.last_seen_at = host_addresses(), now
                    session.flush()
                    return agent
            except IntegrityError:
                continue  # another worker on this host registered it at the same moment
        raise RuntimeError(f"could not register agent {name!r}")

    def seen(self, agent_id: int) -> None:
        with self.db.session() as session:
            session.execute(update(Agent).where(Agent.id == agent_id).values(last_seen_at=utcnow()))

    def all(self) -> list[Agent]:
        with self.db.session() as session:
            return list(session.scalars(select(Agent).order_by(Agent.id)))

    def known_ids(self) -> set[int]:
        with self.db.session() as session:
            return set(session.scalars(select(Agent.id)))


def is_online(agent: Agent, now: datetime | None = None) -> bool:
    return (now or utcnow()) - agent.last_seen_at <= ONLINE_WITHIN
