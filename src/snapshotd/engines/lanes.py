"""Lanes of the egress guard: a listener for one browser context that may apply a request filter
before the guard's egress policy (`EgressGuard.lane` opens one), and the filter's protocol.

Because a lane serves a single capture, it is also where that capture's DNS answers are kept: the
shared guard serves every capture at once and could not tell whose lookup was whose."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from snapshotd.engines.egress import IPAddress

__all__ = ["Lane", "RequestFilter"]

_RECORD_LIMIT = 1000


class RequestFilter(Protocol):
    def refusal(self, url: str, headers: Sequence[tuple[str, str]] | None) -> str | None:
        """Why the request for `url` is blocked, or None. `headers` is None for a CONNECT, where
        only the host is known and `url` is `https://host/`."""


class Lane:
    """One capture's listener on the guard: its proxy URL, what its filter blocked, each as
    `{"url": ..., "reason": ...}` in the order first seen, and the names the guard resolved for
    it (`dns`)."""

    def __init__(self, screen: RequestFilter | None = None) -> None:
        self.screen = screen
        self.port = 0
        self.blocked: list[dict[str, str]] = []
        self.tunnels_blocked: set[str] = set()  # host or host:port, as a URL's host shows it
        self._seen: set[tuple[str, str]] = set()
        self.handlers: set[asyncio.Task[object]] = set()  # connections the guard is serving
        # host -> {"answers": every address it resolved to, "used": those connected to}
        self.dns: dict[str, dict[str, list[str]]] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def resolved(self, host: str, answers: Sequence[IPAddress], used: IPAddress | None) -> None:
        """Keeps what `host` resolved to and which address was connected to (None: refused)."""
        key = host.strip("[]").lower()
        record = self.dns.get(key)
        if record is None:
            if len(self.dns) >= _RECORD_LIMIT:
                return
            record = self.dns[key] = {"answers": [], "used": []}
        for address in map(str, answers):
            if address not in record["answers"]:
                record["answers"].append(address)
        if used is not None and str(used) not in record["used"]:
            record["used"].append(str(used))

    def refusal(self, url: str, headers: Sequence[tuple[str, str]] | None) -> str | None:
        if self.screen is None:
            return None
        reason = self.screen.refusal(url, headers)
        if reason is not None and (url, reason) not in self._seen:
            if len(self.blocked) < _RECORD_LIMIT:
                self.blocked.append({"url": url, "reason": reason})
            self._seen.add((url, reason))
        return reason
