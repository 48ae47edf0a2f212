"""Several machines starting at once against one fresh PostgreSQL database all migrate it, and
migrations that rewrite stored data do so both ways."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, select

from snapshotd.config import Settings
from snapshotd.services.accounts import authenticate
from snapshotd.services.graph import build_services
from snapshotd.services.synthetic import ProbeSettings, Scope, TestFields
from snapshotd.store.db import MIGRATIONS, Database
from snapshotd.store.models import SyntheticTest
from tests.cluster import fresh_database


def test_concurrent_migrations_of_a_fresh_database_all_succeed() -> None:
    with fresh_database() as url:
        migrate_at_once(url)


def migrate_at_once(url: str) -> None:
    databases = [Database.from_url(url) for _ in range(4)]
    try:
        with ThreadPoolExecutor(len(databases)) as pool:
            for outcome in [pool.submit(database.migrate) for database in databases]:
                outcome.result(timeout=120)  # without the lock they fail or deadlock
        assert "snapshots" in inspect(databases[0].engine).get_table_names()
    finally:
        for database in databases:
            database.dispose()


def migrate(db: Database, revision: str, *, down: bool = False) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)


def stored_config(db: Database, test_id: int) -> list[tuple[str, Any]]:
    with db.session() as session:
        config = session.scalar(select(SyntheticTest.config).where(SyntheticTest.id == test_id))
    return list((config or {}).items())


def test_probe_settings_names_migrate_down_and_up_in_place(
    any_db: Database, settings: Settings
) -> None:
    services = build_services(settings, db=any_db)
    agent = services.agents.register("host-a", location="Local", country_id="")
    token = services.accounts.create_token(org="acme", email="ops@acme.test", role="admin")
    with any_db.session() as session:
        principal = authenticate(session, token)
    scope = Scope(principal.org_id, services.accounts.account_group_for(principal, None).id)
    synthetic = services.synthetic
    probe = ProbeSettings(http_time_limit=7, follow_redirects=False, user_agent="probe/1")
    fields = TestFields(
        url="http://127.0.0.1/",
        interval=60,
        agent_ids=[agent.id],
        probe=probe,
        extra={"alertsEnabled": False, "contentRegex": "ok"},
    )
    test = synthetic.create(scope, "http-server", fields, actor="a")
    current = stored_config(any_db, test.id)
    assert current == [
        ("http_time_limit", 7),
        ("follow_redirects", False),
        ("user_agent", "probe/1"),
        ("alertsEnabled", False),
        ("contentRegex", "ok"),
    ]

    migrate(any_db, "0006", down=True)
    assert stored_config(any_db, test.id) == [
        ("httpTimeLimit", 7),
        ("followRedirects", False),
        ("userAgent", "probe/1"),
        ("alertsEnabled", False),
        ("contentRegex", "ok"),
    ]
    migrate(any_db, "head")
    assert stored_config(any_db, test.id) == current
    assert ProbeSettings.of(synthetic.get(scope, test.id)) == ProbeSettings(
        http_time_limit=7, follow_redirects=False, user_agent="probe/1"
    )
