"""Consent pop-ups (cookie walls), answered by DuckDuckGo's autoconsent rules or else hidden.

autoconsent is a content script plus a rule set, both from its npm package (`make deps` installs
it). Its Playwright bundle runs in every frame of the page and talks to us through one binding:
it sends `init` and we answer with a config and the rules that can apply to that frame; it then
reports what it detects (`cmpDetected`, `popupFound`), clicks through the pop-up on its own
(`autoAction` optIn or optOut), and says `autoconsentDone`. For `hide` it only detects, and keeps
its pre-hiding stylesheet on over the pop-up it found.

The wait after navigation is bounded: a page on which no frame has detected a consent manager a
moment after it loaded is taken to have none, and a detected one gets a few seconds at most. When
clicking did not work out, the CSS selectors the rules name for each manager's pop-up are hidden
in every frame instead, and the record says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from playwright.async_api import BrowserContext, Frame, Page
from playwright.async_api import Error as PlaywrightError

from snapshotd.errors import CaptureFailed

Action = Literal["accept", "reject", "hide"]

BINDING = "autoconsentSendMessage"
# A page whose frames detected no consent manager this long after it loaded is taken to have none.
QUIET_SECONDS = 0.6
# The longest wait for a detected consent manager to be answered.
WAIT_SECONDS = 4.0
# After a click, how long a closing pop-up's transition may run before the screenshot.
SETTLE_SECONDS = 1.0
# Long enough that autoconsent's pre-hiding stays on for the whole capture.
PREHIDE_MS = 600_000

_AUTO_ACTIONS: dict[str, str | None] = {"accept": "optIn", "reject": "optOut", "hide": None}
# Lifecycle states of a frame's script in which it is still working on a pop-up.
_BUSY = {"cmpDetected", "openPopupDetected", "runningOptOut", "runningOptIn"}
_HIDE_STYLE = (
    "{ display: none !important; visibility: hidden !important; pointer-events: none !important; }"
)


@dataclass(frozen=True)
class _Rule:
    name: str
    main: bool
    frame: bool
    pattern: re.Pattern[str] | None
    prehide: tuple[str, ...]
    body: dict[str, Any]

    def applies(self, url: str, top: bool) -> bool:
        if not (self.main if top else self.frame):
            return False
        return self.pattern is None or self.pattern.search(url) is not None


@dataclass(frozen=True)
class Autoconsent:
    """The content script and rules of one installed autoconsent package."""

    version: str
    script: str
    rules: tuple[_Rule, ...]

    def rules_for(self, url: str, top: bool) -> list[dict[str, Any]]:
        return [rule.body for rule in self.rules if rule.applies(url, top)]

    def hide_selectors(self, url: str, top: bool) -> list[str]:
        return [s for rule in self.rules if rule.applies(url, top) for s in rule.prehide]

    def popup_selectors(self, name: str) -> list[str]:
        """What the rule called `name` names as its pop-up."""
        return [s for rule in self.rules if rule.name == name for s in rule.prehide]


def _rule(body: dict[str, Any]) -> _Rule:
    context = body.get("runContext") or {}
    pattern = None
    if context.get("urlPattern"):
        try:
            pattern = re.compile(context["urlPattern"])
        except re.error:
            pattern = re.compile("")  # a JavaScript-only pattern: let the script itself decide
    return _Rule(
        name=body["name"],
        main=context.get("main", True),
        frame=context.get("frame", False),
        pattern=pattern,
        prehide=tuple(body.get("prehideSelectors") or ()),
        body=body,
    )


@functools.cache
def load(folder: Path) -> Autoconsent:
    """Reads the package in `folder` once per process; CaptureFailed says how to install it."""
    try:
        package = json.loads((folder / "package.json").read_text())
        script = (folder / "dist" / "autoconsent.playwright.js").read_text()
        bundle = json.loads((folder / "rules" / "rules.json").read_text())
    except (OSError, ValueError) as error:
        raise CaptureFailed(
            f"consent handling needs the @duckduckgo/autoconsent package, which could not be "
            f"read from {folder} ({type(error).__name__}); run `make deps` or set "
            "SNAPSHOTD_AUTOCONSENT_DIR"
        ) from None
    rules = tuple(_rule(body) for body in bundle["autoconsent"])
    return Autoconsent(str(package.get("version", "")), script, rules)


@dataclass
class _State:
    lifecycle: dict[str, str] = field(default_factory=dict)  # by the script's instance id
    detected: str | None = None
    popup: str | None = None
    done: dict[str, Any] | None = None
    failed: bool = False
    # When the page's own frame began looking for a consent manager: the quiet window counts from
    # then, since on a busy machine handing it the rules can take longer than the window itself.
    looking_since: float | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class ConsentHandler:
    """One capture's consent handling: `attach` before the page is opened, `settle` after it
    loaded, then `record` for the metadata."""

    def __init__(self, rules: Autoconsent, action: Action) -> None:
        self.rules = rules
        self.action = action
        self.state = _State()
        self.record: dict[str, Any] = {"cmp": None, "action": action, "handled": False}

    @classmethod
    async def attach(
        cls, context: BrowserContext, action: Action | None, folder: Path
    ) -> ConsentHandler | None:
        if action is None:
            return None
        handler = cls(load(folder), action)
        await context.expose_binding(BINDING, handler._receive)
        await context.add_init_script(handler.rules.script)
        return handler

    def _config(self) -> dict[str, Any]:
        return {
            "enabled": True,
            "autoAction": _AUTO_ACTIONS[self.action],
            "disabledCmps": [],
            "enablePrehide": True,
            "prehideTimeout": PREHIDE_MS,
            "enableCosmeticRules": True,
            "enableGeneratedRules": True,
            "enableHeuristicDetection": False,
            "detectRetries": 20,
            "isMainWorld": True,  # the bundle runs beside the page's own scripts
            "logs": {"errors": False},
        }

    async def _receive(self, source: dict[str, Any], message: Any) -> None:
        if not isinstance(message, dict):
            return
        frame: Frame = source["frame"]
        kind = message.get("type")
        state = self.state
        if kind == "init":
            url = str(message.get("url") or frame.url)
            if url.startswith("about:"):
                return  # a new page's or frame's blank first document, soon replaced
            answer = {
                "type": "initResp",
                "config": self._config(),
                "rules": {"autoconsent": self.rules.rules_for(url, frame.parent_frame is None)},
            }
            await _tell(frame, answer)
        elif kind == "eval":
            try:
                result = bool(await frame.evaluate(str(message.get("code"))))
            except PlaywrightError:
                result = False
            await _tell(frame, {"type": "evalResp", "id": message.get("id"), "result": result})
        elif kind == "report":
            lifecycle = (message.get("state") or {}).get("lifecycle")
            state.lifecycle[str(message.get("instanceId"))] = str(lifecycle)
            waiting = ("loading", "initialized", "waitingForInitResponse")
            top = frame.parent_frame is None
            if top and lifecycle not in waiting and state.looking_since is None:
                state.looking_since = time.perf_counter()
        elif kind == "cmpDetected":
            state.detected = state.detected or str(message.get("cmp"))
        elif kind == "popupFound":
            state.popup = state.popup or str(message.get("cmp"))
        elif kind in ("optInResult", "optOutResult") and not message.get("result"):
            state.failed = True
        elif kind == "autoconsentDone":
            state.done = state.done or message
        state.changed.set()

    def _finished(self, quiet: bool) -> bool:
        state = self.state
        if state.done is not None or (self.action == "hide" and state.popup):
            return True
        busy = any(lifecycle in _BUSY for lifecycle in state.lifecycle.values())
        if self.action == "hide":
            busy = busy and not state.popup
        return quiet and not busy

    async def settle(self, page: Page, deadline: float) -> dict[str, Any]:
        """Waits for autoconsent, at most WAIT_SECONDS and never past `deadline` (a
        `time.perf_counter()` value), hides the pop-up where it was not answered, and returns
        the record of what was done."""
        started = time.perf_counter()
        limit = min(started + WAIT_SECONDS, max(deadline, started + QUIET_SECONDS))
        state = self.state
        while True:
            now = time.perf_counter()
            looking = max(started, state.looking_since or now)
            quiet_at = looking + QUIET_SECONDS if state.looking_since is not None else limit
            if now >= limit or self._finished(now >= quiet_at):
                break
            state.changed.clear()
            wake = min(limit, quiet_at if now < quiet_at else limit)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.changed.wait(), max(0.01, wake - now))
        record = self.record
        record["cmp"] = (state.done or {}).get("cmp") or state.popup or state.detected
        if state.done is not None:
            clicks = int(state.done.get("totalClicks") or 0)
            # A rule may answer through the manager's own script API instead of clicking.
            method = "clicked" if clicks else "scripted"
            record.update(handled=True, method="hidden" if state.done.get("isCosmetic") else method)
            record["clicks"] = clicks
            await _await_transitions(page, SETTLE_SECONDS)
            if await self._lingering(page, str(record["cmp"] or "")):
                # Answered, but the manager left its pop-up on screen (a close still to come on a
                # busy machine): it is hidden, so the picture shows the page as answered.
                await self._hide(page)
                record["note"] = "the pop-up was still shown after it was answered; it was hidden"
        elif self.action == "hide" and state.popup:
            # autoconsent's pre-hiding only makes it transparent, which a fade-in can outlast.
            await self._hide(page)
            record.update(handled=True, method="hidden")
            await _await_transitions(page, SETTLE_SECONDS)
        else:
            hidden = await self._hide(page)
            record.update(handled=hidden > 0, method="hidden" if hidden else None)
            if state.failed or (state.detected and self.action != "hide"):
                record["note"] = f"autoconsent could not {self.action} here; the pop-up was hidden"
        record["rules"] = f"autoconsent {self.rules.version}"
        record["waited_ms"] = round((time.perf_counter() - started) * 1000)
        return record

    async def _lingering(self, page: Page, cmp: str) -> bool:
        """Whether the answered manager's pop-up is still visible after SETTLE_SECONDS."""
        selectors = self.rules.popup_selectors(cmp)
        if not selectors:
            return False
        deadline = time.perf_counter() + SETTLE_SECONDS
        while True:
            try:
                shown = await page.evaluate(_SHOWN_SCRIPT, selectors)
            except PlaywrightError:
                return False
            if not shown or time.perf_counter() >= deadline:
                return bool(shown)
            await asyncio.sleep(0.05)

    async def _hide(self, page: Page) -> int:
        """Hides, in every frame, what the rules name as a consent pop-up there; returns how many
        visible elements that took away."""
        hidden = 0
        for frame in page.frames:
            selectors = self.rules.hide_selectors(frame.url, frame.parent_frame is None)
            if not selectors:
                continue
            try:
                hidden += int(await frame.evaluate(_HIDE_SCRIPT, [selectors, _HIDE_STYLE]))
            except PlaywrightError:
                continue  # the frame went away meanwhile
        return hidden


# Counts the visible elements the selectors match (one bad selector must not spoil the rest),
# then hides them all with one stylesheet.
_HIDE_SCRIPT = """([selectors, style]) => {
  const good = selectors.filter((s) => { try { document.querySelector(s); return true; }
                                         catch { return false; } });
  if (!good.length || !document.documentElement) return 0;
  let visible = 0;
  for (const element of document.querySelectorAll(good.join(','))) {
    // autoconsent's own pre-hiding may have made it transparent: that still counts
    if (element.getClientRects().length && getComputedStyle(element).visibility !== 'hidden') {
      visible += 1;
    }
  }
  const sheet = document.createElement('style');
  sheet.textContent = good.join(',') + ' ' + style;
  document.documentElement.append(sheet);
  return visible;
}"""


# Whether any element the selectors match is on screen and not transparent.
_SHOWN_SCRIPT = """(selectors) => selectors.some((selector) => {
  let found;
  try { found = document.querySelectorAll(selector); } catch { return false; }
  return Array.from(found).some((element) => {
    const style = getComputedStyle(element);
    return element.getClientRects().length > 0 && style.visibility !== 'hidden'
      && Number(style.opacity) > 0.05;
  });
})"""


async def _tell(frame: Frame, message: dict[str, Any]) -> None:
    # One JSON string crosses to the page much faster than the rules as a structured argument.
    # A frame that navigated or went away meanwhile starts over with its next document.
    with contextlib.suppress(PlaywrightError):
        await frame.evaluate(
            "m => window.autoconsentReceiveMessage(JSON.parse(m))", json.dumps(message)
        )


async def _await_transitions(page: Page, limit: float) -> None:
    """Lets a pop-up that was just answered finish fading out, for at most `limit` seconds."""
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        try:
            running = await page.evaluate(
                "document.getAnimations().filter(a => a.playState === 'running').length"
            )
        except PlaywrightError:
            return
        if not running:
            return
        await asyncio.sleep(0.05)
