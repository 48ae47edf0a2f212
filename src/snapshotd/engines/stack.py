"""The capture stack: an egress guard, a browser pool that reaches the network only through it, a
capture engine on that pool, and an HTTP client that also goes through the guard.

The worker and the local `snapshotd capture` both start it here, so they launch Chromium the same
way and no caller can forget to put the guard in front of it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx

from snapshotd.config import Settings
from snapshotd.engines.blocking import FilterLists
from snapshotd.engines.browser import BrowserPool
from snapshotd.engines.capture import CaptureEngine
from snapshotd.engines.egress import EgressPolicy
from snapshotd.engines.guard import EgressGuard

# Webhook deliveries and other small requests made beside the captures.
HTTP_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class CaptureStack:
    guard: EgressGuard
    pool: BrowserPool
    engine: CaptureEngine
    http: httpx.AsyncClient


@asynccontextmanager
async def capture_stack(
    settings: Settings, *, slots: int | None = None, hosts: Mapping[str, str] | None = None
) -> AsyncIterator[CaptureStack]:
    """Starts the stack from `settings`, with `slots` captures at once (default: the worker's
    concurrency); everything is closed on the way out, the browser before the guard. `hosts` pins
    names to addresses for the guard (see EgressPolicy); tests use it."""
    async with (
        EgressGuard(EgressPolicy(settings.egress_allow, hosts=hosts)) as guard,
        BrowserPool(
            executable=settings.chromium_path,
            proxy_url=guard.url,
            slots=slots or settings.worker_concurrency,
            recycle_after=settings.browser_recycle_after,
            sandbox=settings.chromium_sandbox,
        ) as pool,
        httpx.AsyncClient(proxy=guard.url, timeout=HTTP_TIMEOUT_SECONDS) as http,
    ):
        engine = CaptureEngine(
            pool,
            guard,
            default_timeout_ms=settings.capture_timeout_ms,
            max_full_page_height=settings.max_full_page_height,
            max_navigations=settings.max_navigations,
            filter_lists=FilterLists(settings.filter_lists_dir),
            autoconsent_dir=settings.resolved_autoconsent_dir,
            archive_max_bytes=settings.wacz_max_bytes,
        )
        yield CaptureStack(guard, pool, engine, http)
