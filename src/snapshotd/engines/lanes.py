"""Lanes of the egress guard: a listener for one browser context that applies a request filter
before the guard's egress policy (`EgressGuard.lane` opens one), and the filter's protocol."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

__all__ = ["Lane", "RequestFilter"]

_RECORD_LIMIT = 1000


class RequestFilter(Protocol):
    def refusal(self, url: str, headers: Sequence[tuple[str, str]] | None) -> str | None:
        """Why the request for `url` is blocked, or None. `headers` is None for a CONNECT, where
        only the host is known and `url` is `https://host/`."""


class Lane:
    """One capture's listener on the guard: its proxy URL, and what its filter blocked, each
    as `{"url": ..., "reason": ...}` in the order first seen."""

    def __init__(self, screen: RequestFilter) -> None:
        self.screen = screen
        self.port = 0
        self.blocked: list[dict[str, str]] = []
        self.tunnels_blocked: set[str] = set()  # host or host:port, as a URL's host shows it
        self._seen: set[tuple[str, str]] = set()
        self.handlers: set[asyncio.Task[object]] = set()  # connections the guard is serving

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def refusal(self, url: str, headers: Sequence[tuple[str, str]] | None) -> str | None:
        reason = self.screen.refusal(url, headers)
        if reason is not None and (url, reason) not in self._seen:
            if len(self.blocked) < _RECORD_LIMIT:
                self.blocked.append({"url": url, "reason": reason})
            self._seen.add((url, reason))
        return reason
