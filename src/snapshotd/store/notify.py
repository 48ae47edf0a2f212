"""PostgreSQL LISTEN/NOTIFY for the job queue, so workers on other machines start new jobs at once.

`JobQueue.enqueue` sends `NOTIFY snapshotd_jobs` in the caller's transaction (PostgreSQL delivers
it at commit, and never for a rolled-back transaction). A `JobListener` holds one autocommit
connection that LISTENs and calls back on every notification; it reconnects with backoff when the
server goes away. Polling stays as the fallback, so a lost notification only delays a job until the
next poll.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import Engine

from snapshotd.errors import DatabaseUnavailable
from snapshotd.outage_log import OutageLog
from snapshotd.store.outages import as_outage

log = logging.getLogger(__name__)

CHANNEL = "snapshotd_jobs"


def conninfo(engine: Engine) -> str:
    """The psycopg connection string of a SQLAlchemy `postgresql+psycopg://` engine."""
    url = engine.url.set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class JobListener:
    def __init__(self, dsn: str, on_notify: Callable[[], None]) -> None:
        self.dsn = dsn
        self.on_notify = on_notify
        self.listening = threading.Event()
        self._outages = OutageLog(log, then="jobs are found by polling until it is back")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job-listener", daemon=True)

    def start(self) -> JobListener:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        import psycopg  # only PostgreSQL deployments install it (the `postgres` extra)

        delay = 0.5
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    self._outages.recovered(DatabaseUnavailable)
                    self.listening.set()
                    delay = 0.5
                    while not self._stop.is_set():
                        for _notice in connection.notifies(timeout=1.0, stop_after=1):
                            self.on_notify()
            except psycopg.Error as error:
                self.listening.clear()
                outage = as_outage(error)
                if outage is not None:
                    self._outages.failed(outage, "listening for new jobs")
                else:
                    log.warning("job listener: %s; reconnecting", str(error).strip())
                self._stop.wait(delay)
                delay = min(delay * 2, 15.0)
