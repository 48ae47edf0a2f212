"""A log of outages that says when a part snapshotd depends on goes away, and when it is back."""

from __future__ import annotations

import logging
import threading
import time

from snapshotd.errors import Outage


class OutageLog:
    """Logs each outage once when it starts, a reminder at most every `every` seconds while it
    lasts, and once when it ends. A part that is down fails every request and every poll; a
    traceback for each would bury the one line an operator needs. `then` says what happens
    meanwhile, e.g. "will try again"."""

    def __init__(self, logger: logging.Logger, *, then: str, every: float = 60.0) -> None:
        self._log = logger
        self._then = then
        self._every = every
        self._lock = threading.Lock()
        # component -> (when it was last logged, when it last failed, failures not logged)
        self._open: dict[str, tuple[float, float, int]] = {}

    def failed(self, outage: Outage, doing: str) -> None:
        """Records that `doing` (e.g. "claiming jobs") failed because of `outage`."""
        now = time.monotonic()
        with self._lock:
            known = self._open.get(outage.component)
            new = known is None or now - known[1] > self._every
            if known is not None and not new and now - known[0] < self._every:
                self._open[outage.component] = (known[0], now, known[2] + 1)
                return
            quiet = 0 if known is None else known[2]
            self._open[outage.component] = (now, now, 0)
        if new:
            self._log.warning("%s, while %s; %s", outage.summary, doing, self._then)
        else:
            self._log.warning(
                "%s still: %d more failures, the latest while %s; %s",
                outage.summary,
                quiet + 1,
                doing,
                self._then,
            )

    def recovered(self, *outages: type[Outage]) -> None:
        """Notes that the parts `outages` name work again, logging it for those that had not."""
        for kind in outages:
            with self._lock:
                was = self._open.pop(kind.component, None)
            if was is not None:
                self._log.info("%s works again", kind.component)
