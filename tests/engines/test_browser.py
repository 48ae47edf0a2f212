"""The browser pool: recycling, relaunch after a crash, and the outer deadline."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import pytest

from snapshotd.config import Settings
from snapshotd.engines.browser import BrowserPool, SandboxUnavailable
from snapshotd.engines.capture import CaptureEngine, CaptureOptions
from snapshotd.engines.egress import EgressPolicy
from snapshotd.engines.guard import EgressGuard
from snapshotd.errors import CaptureFailed
from tests.pages import PageServer

CHROMIUM = Settings().chromium_path


def browser_pids() -> list[int]:
    """Chromium processes descended from this test process."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        pid = int(entry.name)
        names[pid] = stat[stat.index("(") + 1 : stat.rindex(")")]
        parents[pid] = int(stat[stat.rindex(")") + 2 :].split()[1])

    def descends(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == os.getpid():
                return True
        return False

    return [pid for pid, name in names.items() if name.startswith("chrom") and descends(pid)]


async def shoot(engine: CaptureEngine, url: str) -> int:
    result = await engine.capture(CaptureOptions(url=url, evidence=False))
    return result.artifacts[0].width or 0


def test_recycles_after_n_captures_and_relaunches_after_a_crash(pages: PageServer) -> None:
    async def scenario() -> None:
        async with (
            EgressGuard(EgressPolicy(["127.0.0.1/32"])) as guard,
            BrowserPool(executable=CHROMIUM, proxy_url=guard.url, slots=2, recycle_after=2) as pool,
        ):
            engine = CaptureEngine(pool, guard)
            for _ in range(3):
                assert await shoot(engine, pages.url + "/") == 1280
            assert pool.stats.launches == 2 and pool.stats.captures == 3

            for pid in browser_pids():
                # Killing the main process takes its helpers with it; some may be gone already.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            await asyncio.sleep(0.5)
            assert await shoot(engine, pages.url + "/") == 1280
            assert pool.stats.launches == 3 and pool.stats.restarts == 1
        assert browser_pids() == []

    asyncio.run(scenario())


def test_a_hung_page_is_cut_off_and_the_next_capture_works(pages: PageServer) -> None:
    async def scenario() -> None:
        async with (
            EgressGuard(EgressPolicy(["127.0.0.1/32"])) as guard,
            BrowserPool(executable=CHROMIUM, proxy_url=guard.url, slots=1) as pool,
        ):
            engine = CaptureEngine(pool, guard)
            for path in ("/busy", "/alerts"):
                with pytest.raises(CaptureFailed, match="did not answer"):
                    await engine.capture(CaptureOptions(url=pages.url + path, timeout_ms=1000))
            assert await shoot(engine, pages.url + "/") == 1280
            assert pool.stats.restarts == 2

    asyncio.run(scenario())


def own_user_namespace(pid: int) -> bool:
    return os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")


def renderer_pids() -> list[int]:
    renderers = []
    for pid in browser_pids():
        with contextlib.suppress(OSError):  # a helper that exited meanwhile
            if b"--type=renderer" in Path(f"/proc/{pid}/cmdline").read_bytes():
                renderers.append(pid)
    return renderers


@pytest.mark.skipif(os.geteuid() != 0, reason="as root, Chromium refuses its sandbox")
def test_auto_captures_without_the_sandbox_where_chromium_refuses_it_and_says_why_once(
    pages: PageServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with (
            EgressGuard(EgressPolicy(["127.0.0.1/32"])) as guard,
            BrowserPool(executable=CHROMIUM, proxy_url=guard.url, recycle_after=1) as pool,
        ):
            engine = CaptureEngine(pool, guard)
            for _ in range(2):  # two browsers: the sandbox is asked for once per process
                assert await shoot(engine, pages.url + "/") == 1280
            assert pool.stats.launches == 2 and not pool.stats.sandboxed

    asyncio.run(scenario())
    warnings = [r.getMessage() for r in caplog.records if "without its sandbox" in r.getMessage()]
    assert len(warnings) == 1
    assert "Running as root without --no-sandbox is not supported" in warnings[0]


@pytest.mark.skipif(os.geteuid() != 0, reason="as root, Chromium refuses its sandbox")
def test_sandbox_on_refuses_to_start_chromium_without_it() -> None:
    async def scenario() -> None:
        async with BrowserPool(executable=CHROMIUM, proxy_url=None, sandbox="on"):
            raise AssertionError("Chromium started without its sandbox")

    with pytest.raises(SandboxUnavailable, match="Running as root"):
        asyncio.run(scenario())
    assert browser_pids() == []


@pytest.mark.skipif(os.geteuid() == 0, reason="as root, Chromium refuses its sandbox")
def test_renderers_run_in_a_user_namespace_of_their_own(pages: PageServer) -> None:
    async def scenario() -> None:
        async with (
            EgressGuard(EgressPolicy(["127.0.0.1/32"])) as guard,
            BrowserPool(executable=CHROMIUM, proxy_url=guard.url, sandbox="on") as pool,
        ):
            engine = CaptureEngine(pool, guard)
            async with pool.context() as context:
                page = await context.new_page()
                await page.goto(pages.url + "/")
                renderers = renderer_pids()
                assert renderers and all(own_user_namespace(pid) for pid in renderers)
            assert await shoot(engine, pages.url + "/") == 1280
            assert pool.stats.sandboxed

    asyncio.run(scenario())


def test_sandbox_off_never_asks_for_it(pages: PageServer, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with BrowserPool(executable=CHROMIUM, proxy_url=None, sandbox="off") as pool:
            async with pool.context() as context:
                page = await context.new_page()
                await page.goto("data:text/html,<p>off</p>")
                renderers = renderer_pids()
                assert renderers and not any(own_user_namespace(pid) for pid in renderers)
            assert pool.stats.launches == 1 and not pool.stats.sandboxed

    asyncio.run(scenario())
    assert not [r for r in caplog.records if "sandbox" in r.getMessage()]
