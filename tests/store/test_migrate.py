"""Several machines starting at once against one fresh PostgreSQL database all migrate it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import inspect

from snapshotd.store.db import Database
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
