"""What snapshotd is measured against: a naive warm Playwright loop, and shot-scraper."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import playwright
from playwright.sync_api import ViewportSize, sync_playwright

from bench import proc
from bench.stats import Series

HEADLESS_SHELL = "/usr/lib/chromium/chromium-headless-shell"
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}


@dataclass
class LoopResult:
    series: Series
    browser_version: str
    # CPU per shot of the whole loop: its Python thread plus Playwright's driver and Chromium.
    tree_cpu_ms: float | None = None
    tree_cpu_by_kind: dict[str, float] = field(default_factory=dict)


def _driver_cpu(driver_pids: list[int]) -> dict[str, float]:
    spent: dict[str, float] = {}
    for pid in driver_pids:
        for name, seconds in proc.tree_cpu_by_kind(pid).items():
            spent[name] = spent.get(name, 0.0) + seconds
    return spent


def playwright_loop(urls: str | Sequence[str], shots: int, warmup: int = 3) -> LoopResult:
    """One shot at a time on one warm browser, a fresh context per shot, cycling through `urls`."""
    targets = [urls] if isinstance(urls, str) else list(urls)
    series = Series()
    cpu = 0.0
    tree: dict[str, float] = {}
    before = {p.pid for p in proc.descendants(os.getpid())}
    with sync_playwright() as playwright:
        # Playwright's driver is the child that sync_playwright() started; Chromium runs under it.
        driver = [p.pid for p in proc.descendants(os.getpid()) if p.pid not in before]
        browser = playwright.chromium.launch(executable_path=HEADLESS_SHELL)
        try:
            for index in range(warmup + shots):
                if index == warmup:
                    cpu = time.thread_time()
                    tree = _driver_cpu(driver)
                began = time.perf_counter()
                context = browser.new_context(viewport=VIEWPORT)
                page = context.new_page()
                page.goto(targets[index % len(targets)], wait_until="load")
                page.screenshot()
                context.close()
                if index >= warmup:
                    series.add(time.perf_counter() - began)
            thread = time.thread_time() - cpu
            after = _driver_cpu(driver)
            # Only the Playwright client's thread: comparable with snapshotd's serve process.
            series.cpu_ms = thread * 1000 / shots
            version = browser.version
        finally:
            browser.close()
    spent = {name: after[name] - tree.get(name, 0.0) for name in after}
    spent["python (loop thread)"] = thread
    return LoopResult(series, version, sum(spent.values()) * 1000 / shots, spent)


def _fake_browsers_dir(root: Path) -> Path:
    """A Playwright browser cache whose headless shell is the Debian binary.

    shot-scraper has no executable-path option, but Playwright finds its browser under
    PLAYWRIGHT_BROWSERS_PATH, so a symlink there runs the same binary with nothing downloaded.
    """
    browsers = Path(playwright.__file__ or "").parent / "driver/package/browsers.json"
    revision = next(
        b["revision"]
        for b in json.loads(browsers.read_text())["browsers"]
        if b["name"] == "chromium-headless-shell"
    )
    folder = root / f"chromium_headless_shell-{revision}" / "chrome-headless-shell-linux64"
    folder.mkdir(parents=True)
    (folder / "chrome-headless-shell").symlink_to(HEADLESS_SHELL)
    return root


@dataclass
class CliResult:
    series: Series | None
    note: str


def shot_scraper_loop(url: str, shots: int, warmup: int = 1) -> CliResult:
    """One `shot-scraper shot` process per capture, as its users run it."""
    executable = Path(sys.executable).parent / "shot-scraper"
    if not executable.exists():
        return CliResult(None, "shot-scraper is not installed in the venv; row skipped")
    series = Series()
    with tempfile.TemporaryDirectory(prefix="snapshotd-bench-ss-") as tmp:
        env = {**os.environ, "PLAYWRIGHT_BROWSERS_PATH": str(_fake_browsers_dir(Path(tmp) / "pw"))}
        for index in range(warmup + shots):
            output = Path(tmp) / f"shot-{index}.png"
            command = [str(executable), "shot", url, "-o", str(output), "--browser", "chromium"]
            command += ["--width", "1280", "--height", "800", "--silent"]
            began = time.perf_counter()
            error = _run(command, env)
            if error or not output.exists():
                return CliResult(None, f"shot-scraper could not capture ({error}); row skipped")
            if index >= warmup:
                series.add(time.perf_counter() - began)
    note = "shot-scraper drove the Debian headless shell via a PLAYWRIGHT_BROWSERS_PATH symlink"
    return CliResult(series, note)


def _run(command: list[str], env: dict[str, str], timeout: float = 60.0) -> str:
    # Own session so that a Ctrl-C at the terminal reaches only the bench, which then kills this.
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        _, stderr = process.communicate(timeout=timeout)
    except BaseException:
        # Playwright starts Chromium in its own process group, so kill the tree pid by pid.
        for child in proc.descendants(process.pid):
            proc.kill_exact(child)
        process.kill()
        process.wait()
        raise
    if process.returncode != 0:
        lines = stderr.decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"exit status {process.returncode}"
    return ""
