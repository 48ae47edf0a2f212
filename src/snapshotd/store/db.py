"""Database engine, sessions and migrations, for SQLite (embedded) and PostgreSQL."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Connection,
    CursorResult,
    Delete,
    Engine,
    Executable,
    Row,
    Update,
    create_engine,
    event,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
# Any fixed 64-bit number; held while one process migrates a PostgreSQL database.
MIGRATE_LOCK = 0x736E617073686F74
# Set in a session's `info` by whatever queues a job in it; read after the commit.
ENQUEUED = "snapshotd.enqueued"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # As many connections kept as an API process has threads that use them (see below):
        # a connection opened past the pool is closed after one use, and opening one runs the
        # PRAGMAs again.
        engine = create_engine(
            url,
            pool_size=20,
            max_overflow=20,
            connect_args={"check_same_thread": False, "timeout": 10},
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # An API process runs up to 40 requests on threads at once; keeping 20 connections open (and
    # opening up to 20 more in bursts) stops a busy process from opening and closing connections
    # on every request.
    # connect_timeout: a database host that does not answer at all fails a request in seconds,
    # not after the operating system's TCP timeout.
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=20,
        max_overflow=20,
        connect_args={"connect_timeout": 5},
    )


def on_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def insert_or_merge(session: Session, model: Any) -> Any:
    """The database's own INSERT, which takes ON CONFLICT (DO NOTHING / DO UPDATE)."""
    return (postgresql.insert if on_postgres(session) else sqlite.insert)(model)


# How many ids an `IN (...)` list holds at most: well under SQLite's limit on bound parameters.
CHUNK = 500


def chunked(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    """`items` in slices of at most CHUNK, for statements that list them."""
    for index in range(0, len(items), CHUNK):
        yield items[index : index + CHUNK]


def rowcount(executor: Session | Connection, statement: Update | Delete) -> int:
    """Rows an UPDATE or DELETE matched (the compare-and-swap result fenced writes rely on)."""
    result = cast(CursorResult[Any], executor.execute(statement))
    return int(result.rowcount)


class Database:
    """An engine plus its session factory; `session()` commits on success, rolls back on error.

    Code in the same process can ask to be told when a committed transaction queued a job
    (`on_enqueued`), so an idle worker starts it at once instead of at its next poll.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._factory = sessionmaker(engine, expire_on_commit=False)
        self._reader: Engine | None = None
        self._listeners: list[Callable[[], None]] = []

    def on_enqueued(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Calls `listener` after each commit that queued a job; returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    @classmethod
    def from_url(cls, url: str) -> Database:
        return cls(make_engine(url))

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def ping(self) -> str:
        """ "ok" when the database answers a query, else why not (for readiness checks)."""
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as error:
            return f"unavailable: {type(error).__name__}"
        return "ok"

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._factory() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
            if session.info.pop(ENQUEUED, False):
                for listener in list(self._listeners):
                    listener()

    def read(self, query: Executable, params: Mapping[str, Any]) -> Sequence[Row[Any]]:
        """The rows of one SELECT, run outside any transaction: the fast path for the hottest
        reads. On PostgreSQL its connections come from a pool of their own, in autocommit (no
        BEGIN and ROLLBACK round trips) and without a ping per checkout: a connection the server
        has dropped (a restart, an idle timeout) is replaced and the read tried once more."""
        for attempt in (1, 2):
            try:
                with self._reading_engine().connect() as connection:
                    return connection.execute(query, params).all()
            except DBAPIError as error:
                if attempt == 2 or not error.connection_invalidated:
                    raise
        raise AssertionError("unreachable")

    def _reading_engine(self) -> Engine:
        if self._reader is None:
            self._reader = self.engine
            if self.is_postgres:
                self._reader = create_engine(
                    self.engine.url,
                    isolation_level="AUTOCOMMIT",
                    pool_size=10,
                    max_overflow=10,
                    connect_args={"connect_timeout": 5},
                )
        return self._reader

    def migrate(self) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Machines started together migrate one after another instead of into each other
                # (the lock is released when this transaction ends).
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATE_LOCK}
                )
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def dispose(self) -> None:
        self.engine.dispose()
        if self._reader not in (None, self.engine):
            self._reader.dispose()


def open_database(url: str, *, wait: bool = False) -> Database:
    """The database at `url`, migrated. With `wait` (a server or worker starting), a database
    that cannot be reached yet is waited for, with one log line when the wait starts and one when
    it ends, rather than the process exiting for its supervisor to restart it."""
    from snapshotd.errors import DatabaseUnavailable
    from snapshotd.outage_log import OutageLog
    from snapshotd.store.outages import as_outage

    waiting = OutageLog(log, then="waiting for it before starting")
    delay = 1.0
    while True:
        db = Database.from_url(url)
        try:
            db.migrate()
        except Exception as error:
            outage = as_outage(error)
            if not wait or outage is None:
                raise
            db.dispose()
            waiting.failed(outage, "applying migrations")
            time.sleep(delay)
            delay = min(delay * 2, 15.0)
            continue
        waiting.recovered(DatabaseUnavailable)
        return db
