"""What a capture changes about the browser and the page so that it shows what a person would see:
the browser's identity, lazy content scrolled into view, and motion stopped for a stable picture.

Each step returns the facts it recorded, which the capture engine puts in the snapshot's metadata:
a capture is evidence, so every change made to the page is written down beside it.
"""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import CDPSession, Page

_CHROME_VERSION = re.compile(r"(?:Headless)?Chrome/(\d+)\.([\d.]+)")
_PLATFORMS = (
    ("Android", "Android"),
    ("CrOS", "Chrome OS"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("iPhone", "iOS"),
    ("Linux", "Linux"),
)


def ordinary_user_agent(browser_user_agent: str) -> str:
    """The desktop User-Agent of this Chromium build, without the word that marks it headless."""
    return browser_user_agent.replace("HeadlessChrome/", "Chrome/")


def client_hints(user_agent: str) -> dict[str, Any] | None:
    """User-agent client hints (`Sec-CH-UA*`, `navigator.userAgentData`) that agree with a Chrome
    User-Agent string, naming Chromium and no headless brand; None when the string is not
    Chrome's, in which case the browser's own hints stay."""
    match = _CHROME_VERSION.search(user_agent)
    if match is None:
        return None
    major, full = match.group(1), f"{match.group(1)}.{match.group(2)}"
    platform = next((name for token, name in _PLATFORMS if token in user_agent), "Unknown")
    return {
        "brands": [
            {"brand": "Not:A-Brand", "version": "8"},
            {"brand": "Chromium", "version": major},
        ],
        "fullVersionList": [
            {"brand": "Not:A-Brand", "version": "8.0.0.0"},
            {"brand": "Chromium", "version": full},
        ],
        "fullVersion": full,
        "platform": platform,
        "platformVersion": "",
        "architecture": "arm" if platform in ("Android", "iOS") else "x86",
        "model": "",
        "mobile": "Mobile" in user_agent,
        "bitness": "64",
        "wow64": False,
    }


async def present_as(cdp: CDPSession, user_agent: str, locale: str | None) -> bool:
    """Makes the page's client hints match `user_agent`; True when they were set. Applies to the
    page and every frame in it, the cross-site ones included."""
    hints = client_hints(user_agent)
    if hints is None:
        return False
    override: dict[str, Any] = {"userAgent": user_agent, "userAgentMetadata": hints}
    if locale:
        override["acceptLanguage"] = locale
    await cdp.send("Emulation.setUserAgentOverride", override)
    return True


# Scrolls one viewport at a time so that every element crosses the viewport once (which is what
# `loading=lazy` and IntersectionObserver-driven loaders wait for), then returns to the top and
# waits for the images that scrolling started. Bounded by a height and a time budget.
_SCROLL_THROUGH = """
async ([maxHeight, budgetMs]) => {
  const started = performance.now();
  const root = document.scrollingElement || document.documentElement;
  const step = Math.max(200, Math.floor(window.innerHeight * 0.9));
  const frame = () => new Promise((done) => requestAnimationFrame(() => setTimeout(done, 16)));
  let steps = 0;
  let y = 0;
  while (performance.now() - started < budgetMs) {
    const bottom = Math.min(root.scrollHeight, maxHeight) - window.innerHeight;
    if (y >= bottom) break;
    y = Math.min(y + step, bottom);
    window.scrollTo(0, y);
    steps += 1;
    await frame();
  }
  const reached = Math.round(y + window.innerHeight);
  window.scrollTo(0, 0);
  await frame();
  const pending = Array.from(document.images).filter((image) => !image.complete);
  const left = Math.max(0, budgetMs - (performance.now() - started));
  const settled = (image) => new Promise((done) => {
    image.addEventListener("load", done, { once: true });
    image.addEventListener("error", done, { once: true });
  });
  const timer = new Promise((done) => setTimeout(() => done("timeout"), left));
  const outcome = await Promise.race([Promise.all(pending.map(settled)), timer]);
  return {
    steps,
    height: Math.min(root.scrollHeight, maxHeight),
    reached,
    images_waited_for: pending.length,
    images_timed_out: outcome === "timeout",
  };
}
"""


async def scroll_through(page: Page, max_height: int, budget_ms: int) -> dict[str, Any]:
    """Scrolls the page from top to bottom and back, loading what waits to be seen; the facts."""
    facts: dict[str, Any] = await page.evaluate(_SCROLL_THROUGH, [max_height, budget_ms])
    return facts


# Finite animations and transitions jump to their end state; endless ones stop at their start.
# Videos pause on their first frame, and the text caret is hidden. Later animations cannot start:
# the stylesheet turns their durations to nothing.
_FREEZE = """
() => {
  const style = document.createElement("style");
  style.setAttribute("data-snapshotd", "freeze-animations");
  style.textContent = `*, *::before, *::after {
    transition-duration: 0s !important; transition-delay: 0s !important;
    animation-play-state: paused !important; caret-color: transparent !important;
  }`;
  (document.head || document.documentElement).appendChild(style);
  let finished = 0;
  let stopped = 0;
  for (const animation of document.getAnimations()) {
    const timing = animation.effect ? animation.effect.getComputedTiming() : null;
    if (timing && Number.isFinite(timing.endTime)) {
      animation.finish();
      finished += 1;
    } else {
      animation.pause();
      animation.currentTime = 0;
      stopped += 1;
    }
  }
  let videos = 0;
  for (const video of document.querySelectorAll("video")) {
    video.autoplay = false;
    video.pause();
    if (video.currentTime !== 0) video.currentTime = 0;
    videos += 1;
  }
  return { animations_finished: finished, animations_stopped: stopped, videos_paused: videos };
}
"""


async def freeze(page: Page) -> dict[str, Any]:
    """Stops motion in the page so two captures of it agree; what was stopped, counted."""
    facts: dict[str, Any] = await page.evaluate(_FREEZE)
    # A paused video shows its first frame only once it has seeked there.
    await page.evaluate(
        """() => Promise.all(Array.from(document.querySelectorAll("video"))
             .filter((video) => video.seeking)
             .map((video) => new Promise((done) => {
               video.addEventListener("seeked", done, { once: true });
               setTimeout(done, 1000);
             })))"""
    )
    return facts
