"""A pool of warm Chromium: one browser per worker process, a fresh context per capture.

The pool caps concurrent contexts with a semaphore, relaunches the browser when it crashes or stops
answering, and swaps in a new browser after `recycle_after` captures (the old one is closed once its
last context is done), so a long-running worker does not grow without bound.

Chromium renders pages from anywhere, so it runs inside its own sandbox whenever it can have one
(`sandbox="auto"`): that takes a user other than root and a kernel that lets it make user
namespaces. Where it cannot, "auto" runs it without, saying so once; "on" refuses to run
without; "off" never asks.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from playwright.async_api import Browser, BrowserContext, Playwright, async_playwright
from playwright.async_api import Error as PlaywrightError

log = logging.getLogger(__name__)

SCRATCH_PREFIX = "snapshotd-"

# Flags that keep Chromium's traffic on the egress guard and its start-up quiet on a closed network.
BASE_ARGS = [
    "--proxy-bypass-list=<-loopback>",
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    # Leaves `navigator.webdriver` unset, as in the browser a person uses.
    "--disable-blink-features=AutomationControlled",
]


def private_tmpdir() -> Path:
    """Gives this process its own temp folder, `$TMPDIR/snapshotd-<pid>`, for the browser
    driver's profiles and downloads, and removes the folders of processes that no longer exist.

    The driver cleans up after itself when the worker alone dies, but not when the whole process
    group is killed at once (an OOM kill of the cgroup, `kill -9 -PGID`); without this their
    profiles would pile up in /tmp for good. Called once at worker start-up, before any browser.
    """
    root = Path(tempfile.gettempdir())
    for folder in root.glob(f"{SCRATCH_PREFIX}*"):
        pid = folder.name.removeprefix(SCRATCH_PREFIX)
        if pid.isascii() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
    mine = root / f"{SCRATCH_PREFIX}{os.getpid()}"
    mine.mkdir(mode=0o700, exist_ok=True)
    os.environ["TMPDIR"] = str(mine)  # the driver inherits this environment when it starts
    tempfile.tempdir = None
    atexit.register(shutil.rmtree, mine, ignore_errors=True)
    return mine


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


@dataclass
class PoolStats:
    slots: int
    active: int = 0
    launches: int = 0
    restarts: int = 0
    captures: int = 0
    sandboxed: bool = False


class _Generation:
    def __init__(self, browser: Browser, user_agent: str) -> None:
        self.browser = browser
        self.user_agent = user_agent
        self.active = 0
        self.captures = 0
        self.retired = False


class BrowserPool:
    def __init__(
        self,
        *,
        executable: str,
        proxy_url: str | None,
        slots: int = 2,
        recycle_after: int = 500,
        close_timeout: float = 5.0,
        sandbox: Literal["auto", "on", "off"] = "auto",
    ) -> None:
        self.executable = executable
        self.sandbox = sandbox
        self._sandbox_failed = False  # "auto" asks once per process
        self.proxy_url = proxy_url
        self.recycle_after = recycle_after
        self.close_timeout = close_timeout
        self.stats = PoolStats(slots=slots)
        self._slots = asyncio.Semaphore(slots)
        self._launch_lock = asyncio.Lock()
        self._playwright: Playwright | None = None
        self._current: _Generation | None = None

    async def __aenter__(self) -> BrowserPool:
        self._playwright = await async_playwright().start()
        await self._generation()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._current is not None:
            await self._close(self._current)
            self._current = None
        if self._playwright is not None:
            await self._playwright.stop()
            self._playwright = None

    @property
    def browser_version(self) -> str:
        return self._current.browser.version if self._current else ""

    @property
    def user_agent(self) -> str:
        """The User-Agent this Chromium sends unless told otherwise, as it says it itself."""
        return self._current.user_agent if self._current else ""

    async def _launch(self) -> Browser:
        assert self._playwright is not None, "use the pool as an async context manager"
        options: dict[str, Any] = {"executable_path": self.executable, "args": BASE_ARGS}
        if self.proxy_url:
            options["proxy"] = {"server": self.proxy_url}
        browser = None
        if self.sandbox == "on" or (self.sandbox == "auto" and not self._sandbox_failed):
            try:
                browser = await self._playwright.chromium.launch(chromium_sandbox=True, **options)
            except PlaywrightError as error:
                reason = _launch_failure(error)
                if self.sandbox == "on":
                    raise SandboxUnavailable(reason) from None
                self._sandbox_failed = True
                log.warning(
                    "Chromium runs without its sandbox here (%s); run snapshotd as a user other "
                    "than root where user namespaces are allowed, or set "
                    "SNAPSHOTD_CHROMIUM_SANDBOX=on to refuse to run without it",
                    reason,
                )
        self.stats.sandboxed = browser is not None
        if browser is None:
            browser = await self._playwright.chromium.launch(**options)
        self.stats.launches += 1
        return browser

    async def _generation(self) -> _Generation:
        async with self._launch_lock:
            current = self._current
            if current is None or current.retired or not current.browser.is_connected():
                if current is not None and not current.retired:
                    self.stats.restarts += 1
                    await self._retire(current)
                browser = await self._launch()
                session = await browser.new_browser_cdp_session()
                version = await session.send("Browser.getVersion")
                await session.detach()
                current = _Generation(browser, version["userAgent"])
                self._current = current
            return current

    async def _retire(self, generation: _Generation) -> None:
        generation.retired = True
        if generation.active == 0:
            await self._close(generation)

    async def _close(self, generation: _Generation) -> None:
        try:
            await asyncio.wait_for(generation.browser.close(), self.close_timeout)
        except Exception as error:  # a hung or dead browser: nothing more to do from here
            log.warning("browser did not close cleanly: %s", error)

    async def restart(self) -> None:
        """Drops the current browser (found unresponsive); the next context relaunches it."""
        async with self._launch_lock:
            if self._current is not None and not self._current.retired:
                self.stats.restarts += 1
                await self._retire(self._current)

    @asynccontextmanager
    async def context(self, **options: Any) -> AsyncIterator[BrowserContext]:
        async with self._slots:
            generation = await self._generation()
            generation.active += 1
            self.stats.active += 1
            healthy = True
            try:
                context = await generation.browser.new_context(accept_downloads=False, **options)
                try:
                    yield context
                finally:
                    try:
                        await asyncio.wait_for(context.close(), self.close_timeout)
                    except Exception:
                        healthy = False
            finally:
                generation.active -= 1
                generation.captures += 1
                self.stats.active -= 1
                self.stats.captures += 1
                if not healthy and not generation.retired:
                    self.stats.restarts += 1
                    generation.retired = True
                if not generation.retired and generation.captures >= self.recycle_after:
                    generation.retired = True
                if generation.retired and generation.active == 0:
                    await self._close(generation)


class SandboxUnavailable(RuntimeError):
    """Chromium could not start in its sandbox, and SNAPSHOTD_CHROMIUM_SANDBOX=on asks for it."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"Chromium cannot start inside its sandbox here: {reason}")


def _launch_failure(error: PlaywrightError) -> str:
    """Why Chromium did not start: its own error line when it printed one (e.g. "Running as root
    without --no-sandbox is not supported"), else the first line of the driver's message."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "[err]" in line and ("ERROR:" in line or "FATAL:" in line):
            return line.rsplit("] ", 1)[-1][:300]
    return lines[0][:300] if lines else type(error).__name__
