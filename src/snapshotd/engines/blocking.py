"""`block_ads` and `block_trackers` for one capture.

The capture's browser context gets a lane of the egress guard as its own proxy (Chromium sets a
proxy per context natively; no request interception is turned on). The lane refuses what the lists
block before any name is resolved, so a blocked request costs the page one local round trip. Plain
http requests are judged by their full URL; https ones by host alone at CONNECT time, and only when
the lists block that host for every kind of request. Before the screenshot the page gets one
stylesheet that hides the elements whose request was blocked (no broken-image icon or error page in
an empty ad slot) and the lists' element-hiding rules for the page.

Metadata: every blocked request joins `blocked_requests` as `{"url", "reason"}` with reason "ad" or
"tracker" (an https one as `https://host/`), and `hidden_by_filters` says how many elements the
stylesheet hid and the first selectors that hid something.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol
from urllib.parse import urlsplit

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page

from snapshotd.engines.filterlists import FilterLists, PageRules
from snapshotd.engines.guard import EgressGuard
from snapshotd.engines.lanes import Lane

__all__ = ["Blocking", "FilterLists", "PageFilter", "page_filter"]

MARK = "data-snapshotd-blocked"
_EGRESS_REFUSED = "egress guard refused"
_FRAME_LIMIT = 20
_FRAME_WAIT = 2.0
_SELECTORS_SHOWN = 20
_HIDE = "{display: none !important;}"

# In each frame: mark the elements whose load the lane blocked (by URL for http, by host for https),
# and list the classes and ids in use, which decide the lists' generic hiding rules.
_MARK_AND_SURVEY = """([mark, urls, hosts]) => {
  urls = new Set(urls); hosts = new Set(hosts);
  let marked = 0;
  const loads = 'img, iframe, frame, embed, object, video, audio, input[type=image]';
  for (const element of document.querySelectorAll(loads)) {
    const source = element.currentSrc || element.src || element.data;
    if (!source) continue;
    let url;
    try { url = new URL(source, document.baseURI); } catch { continue; }
    url.hash = '';
    if (urls.has(url.href) || (url.protocol === 'https:' && hosts.has(url.host))) {
      element.setAttribute(mark, '');
      marked += 1;
    }
  }
  const classes = new Set(), ids = new Set();
  for (const element of document.querySelectorAll('[class], [id]')) {
    if (classes.size + ids.size > 10000) break;
    if (element.id) ids.add(element.id);
    for (const name of element.classList) classes.add(name);
  }
  return [marked, [...classes], [...ids]];
}"""

# Adopted, so a page's Content-Security-Policy cannot refuse it; counts what it hides.
_APPLY = """([css, selectors]) => {
  const sheet = new CSSStyleSheet();
  sheet.replaceSync(css);
  document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
  const hidden = new Set(), used = [];
  for (const selector of selectors) {
    let found;
    try { found = document.querySelectorAll(selector); } catch { continue; }
    if (found.length) used.push(selector);
    for (const element of found) hidden.add(element);
  }
  return [hidden.size, used];
}"""


class PageFilter:
    """What blocking does to one capture; with neither option on, nothing."""

    def __init__(self, lane: Lane | None = None, rules: PageRules | None = None) -> None:
        self.lane = lane
        self.rules = rules
        self.hidden: dict[str, Any] | None = None

    @property
    def context_options(self) -> dict[str, Any]:
        return {} if self.lane is None else {"proxy": {"server": self.lane.url}}

    async def tidy(self, page: Page) -> None:
        """Hides blocked elements and what the lists' hiding rules name, in one stylesheet."""
        if self.lane is None or self.rules is None:
            return
        urls = [entry["url"] for entry in self.lane.blocked]
        hosts = sorted(self.lane.tunnels_blocked)
        marked_frames = []
        classes: list[str] = []
        ids: list[str] = []
        for frame in page.frames[:_FRAME_LIMIT]:
            # A busy frame of another site has its own renderer: it must not hold the shot.
            wait = None if frame == page.main_frame else _FRAME_WAIT
            survey = frame.evaluate(_MARK_AND_SURVEY, [MARK, urls, hosts])
            try:
                marked, frame_classes, frame_ids = await asyncio.wait_for(survey, wait)
            except (PlaywrightError, TimeoutError):
                continue  # a frame that went away, never loaded or does not answer
            if frame == page.main_frame:
                classes, ids = frame_classes, frame_ids
            elif marked:
                marked_frames.append(frame)
        hidden, styled = self.rules.hiding(page.url, classes, ids)
        selectors = [f"[{MARK}]", *sorted(hidden)]
        css = "\n".join(
            [f"{selector} {_HIDE}" for selector in selectors]
            + [f"{s} {{{'; '.join(declarations)}}}" for s, declarations in sorted(styled.items())]
        )
        count, used = await page.main_frame.evaluate(_APPLY, [css, selectors])
        for frame in marked_frames:
            apply = frame.evaluate(_APPLY, [f"[{MARK}] {_HIDE}", [f"[{MARK}]"]])
            try:
                count += (await asyncio.wait_for(apply, _FRAME_WAIT))[0]
            except (PlaywrightError, TimeoutError):
                continue
        self.hidden = {"elements": count, "selectors": used[:_SELECTORS_SHOWN]}

    def annotate(self, metadata: dict[str, Any]) -> None:
        """Adds what the lists blocked and hid. A CONNECT the lane refused fails in the browser
        like one the egress policy refused; those are the lists' doing, not the policy's."""
        if self.lane is None or self.rules is None:
            return
        tunnels = self.lane.tunnels_blocked
        kept = [
            entry
            for entry in metadata.get("blocked_requests", [])
            if not (entry["reason"] == _EGRESS_REFUSED and _https_host(entry["url"]) in tunnels)
        ]
        metadata["blocked_requests"] = (kept + self.lane.blocked)[:100]
        metadata["hidden_by_filters"] = self.hidden or {"elements": 0, "selectors": []}


def _https_host(url: str) -> str | None:
    parts = urlsplit(url)
    return parts.netloc.rpartition("@")[2].lower() if parts.scheme == "https" else None


class Blocking(Protocol):
    """The capture options blocking reads."""

    @property
    def url(self) -> str: ...
    @property
    def block_ads(self) -> bool: ...
    @property
    def block_trackers(self) -> bool: ...


@asynccontextmanager
async def page_filter(
    guard: EgressGuard, lists: FilterLists, options: Blocking, *, own_lane: bool = False
) -> AsyncIterator[PageFilter]:
    """Opens a lane for a capture that blocks ads, trackers or both, or that wants one of its own
    (`own_lane`, to keep its DNS answers apart from other captures'); else does nothing."""
    wanted = (("ad", options.block_ads), ("tracker", options.block_trackers))
    reasons = [reason for reason, on in wanted if on]
    if not reasons and not own_lane:
        yield PageFilter()
        return
    rules = PageRules(options.url, await lists.engines(reasons)) if reasons else None
    async with guard.lane(rules) as lane:
        yield PageFilter(lane, rules)
