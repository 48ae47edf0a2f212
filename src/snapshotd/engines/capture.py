"""Page capture: one URL in, image/PDF plus evidence artifacts and metadata out.

The engine is pure work: it takes a browser pool and options and returns bytes and facts. It knows
nothing of jobs, the database or HTTP. The picture itself is taken in `engines/screenshots.py`;
the evidence kept beside it (DOM, HAR, provenance, web archive) in `engines/evidence.py`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from playwright.async_api import BrowserContext, CDPSession, Page, Response
from playwright.async_api import Error as PlaywrightError

from snapshotd.config import DEFAULT_AUTOCONSENT_DIR
from snapshotd.engines import archive, devices, emulation, har, provenance, screenshots
from snapshotd.engines.blocking import FilterLists, page_filter
from snapshotd.engines.browser import BrowserPool
from snapshotd.engines.consent import ConsentHandler
from snapshotd.engines.evidence import Evidence
from snapshotd.engines.guard import DENIED_HEADER, EgressGuard
from snapshotd.engines.useragent import describe_user_agent
from snapshotd.errors import CaptureFailed
from snapshotd.timestamps import iso

MEDIA_TYPES = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "pdf": "application/pdf",
    "html": "text/html; charset=utf-8",
    "mhtml": "multipart/related",
    "har": har.MEDIA_TYPE,
    "certificate_chain": provenance.MEDIA_TYPE,
    "wacz": archive.MEDIA_TYPE,
}


# The longest a capture spends scrolling through a page to load its lazy content (at most half of
# its timeout): pages taller than it can scroll in this time are cut at the full-page height limit.
SCROLL_BUDGET_MS = 10_000


class BrowserGone(RuntimeError):
    """The browser died under a capture. Not the page's fault, so the worker tries the job again
    (on the relaunched browser) instead of failing it as it would a CaptureFailed."""


@dataclass(frozen=True)
class Cookie:
    name: str
    value: str
    domain: str | None = None
    path: str = "/"
    secure: bool = False
    http_only: bool = False


@dataclass(frozen=True)
class CaptureOptions:
    """What the engine does for one capture. The services check a client's request against the
    instance's ceilings (services/capture_request.py) before it becomes these options."""

    url: str
    width: int = 1280
    height: int = 800
    full_page: bool = False
    selector: str | None = None
    device: str | None = None
    format: Literal["png", "jpeg", "webp", "pdf"] = "png"
    quality: int | None = None
    device_scale_factor: float = 1.0
    wait_until: Literal["load", "domcontentloaded", "networkidle"] = "load"
    wait_for_selector: str | None = None
    delay_ms: int = 0
    hide_selectors: tuple[str, ...] = ()
    user_agent: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    cookies: tuple[Cookie, ...] = ()
    color_scheme: Literal["light", "dark", "no-preference"] | None = None
    timeout_ms: int | None = None
    evidence: bool = True
    block_ads: bool = False
    block_trackers: bool = False
    consent: Literal["accept", "reject", "hide"] | None = None
    scroll_lazy: bool = False
    freeze_animations: bool = False
    reduced_motion: bool = False
    media: Literal["screen", "print"] | None = None
    forced_colors: bool = False
    timezone: str | None = None
    locale: str | None = None
    geolocation: tuple[float, float, float] | None = None  # latitude, longitude, accuracy (m)
    fail_on_status: tuple[tuple[int, int], ...] = ()  # inclusive ranges


@dataclass
class CapturedArtifact:
    role: str
    data: bytes
    media_type: str
    width: int | None = None
    height: int | None = None


@dataclass
class CaptureResult:
    """What was captured. A `failure` (the page answered a status the request listed in
    `fail_on_status`) fails the job with that message, but the artifacts are still kept as
    evidence of what the page showed."""

    artifacts: list[CapturedArtifact]
    metadata: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None


@dataclass
class _Watch:
    blocked: list[dict[str, str]] = field(default_factory=list)
    navigations: int = 0
    in_flight: int = 0
    quiet_since: float = field(default_factory=time.monotonic)

    def started(self) -> None:
        self.in_flight += 1

    def ended(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        if self.in_flight == 0:
            self.quiet_since = time.monotonic()

    async def settled(self, limit_s: float, quiet_s: float = 0.25) -> bool:
        """Waits until no request has been in flight for `quiet_s`; False if `limit_s` ran out."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self.in_flight == 0 and time.monotonic() - self.quiet_since >= quiet_s:
                return True
            await asyncio.sleep(0.05)
        return False


def _status_failure(options: CaptureOptions, response: Response | None) -> str | None:
    if response is None or not options.fail_on_status:
        return None
    status = response.status
    for low, high in options.fail_on_status:
        if low <= status <= high:
            listed = str(low) if low == high else f"{low}-{high}"
            return (
                f"the page answered HTTP {status}, which fail_on_status lists ({listed}); "
                "the capture is kept as evidence of what it showed"
            )
    return None


def _context_options(options: CaptureOptions, browser_user_agent: str) -> dict[str, Any]:
    if options.device:
        try:
            context = devices.context_options(options.device)
        except KeyError:
            raise CaptureFailed(f"unknown device {options.device!r}") from None
    else:
        context = {
            "viewport": {"width": options.width, "height": options.height},
            "device_scale_factor": options.device_scale_factor,
        }
    if options.user_agent:
        context["user_agent"] = options.user_agent
    elif "user_agent" not in context:
        context["user_agent"] = emulation.ordinary_user_agent(browser_user_agent)
    if options.headers:
        context["extra_http_headers"] = options.headers
    if options.color_scheme:
        context["color_scheme"] = options.color_scheme
    if options.reduced_motion:
        context["reduced_motion"] = "reduce"
    if options.forced_colors:
        context["forced_colors"] = "active"
    if options.locale:
        context["locale"] = options.locale
    if options.timezone:
        context["timezone_id"] = options.timezone
    if options.geolocation:
        latitude, longitude, accuracy = options.geolocation
        context["geolocation"] = {
            "latitude": latitude,
            "longitude": longitude,
            "accuracy": accuracy,
        }
        context["permissions"] = ["geolocation"]
    return context


def _emulated(options: CaptureOptions, context: dict[str, Any], hints: bool) -> dict[str, Any]:
    """What the capture told the browser to pretend, for the metadata: only what was asked."""
    facts: dict[str, Any] = {
        "user_agent": "request"
        if options.user_agent
        else ("device" if options.device else "ordinary"),
        "client_hints": hints,
    }
    if options.geolocation:
        facts["geolocation"] = context["geolocation"]
    for name in ("locale", "timezone", "media", "color_scheme"):
        if getattr(options, name):
            facts[name] = getattr(options, name)
    for name in ("reduced_motion", "forced_colors"):
        if getattr(options, name):
            facts[name] = True
    return facts


async def _add_cookies(context: BrowserContext, options: CaptureOptions) -> None:
    cookies: list[Any] = []
    for cookie in options.cookies:
        entry: dict[str, Any] = {
            "name": cookie.name,
            "value": cookie.value,
            "secure": cookie.secure,
            "httpOnly": cookie.http_only,
        }
        if cookie.domain:
            entry.update(domain=cookie.domain, path=cookie.path)
        else:
            entry["url"] = options.url
        cookies.append(entry)
    if cookies:
        await context.add_cookies(cookies)


def _watch_page(page: Page, watch: _Watch, max_navigations: int, *, count: bool) -> None:
    """Listens for refused requests, navigations and dialogs; with `count`, also keeps the number
    of requests in flight (each event the page subscribes to costs the driver and this process
    work per request, so only the captures that wait for the network to settle count)."""

    def on_response(response: Response) -> None:
        if response.headers.get(DENIED_HEADER.lower()) == "denied":
            watch.blocked.append({"url": response.url, "reason": "egress guard refused"})

    def on_failed(request: Any) -> None:
        failure = request.failure or ""
        if "ERR_TUNNEL_CONNECTION_FAILED" in failure:
            watch.blocked.append({"url": request.url, "reason": "egress guard refused"})

    def on_navigated(frame: Any) -> None:
        if frame == page.main_frame:
            watch.navigations += 1
            if watch.navigations > max_navigations:
                asyncio.ensure_future(page.close())

    def on_failed_request(request: Any) -> None:
        watch.ended()
        on_failed(request)

    if count:
        page.on("request", lambda _request: watch.started())
        page.on("requestfinished", lambda _request: watch.ended())
    page.on("response", on_response)
    page.on("requestfailed", on_failed_request if count else on_failed)
    page.on("framenavigated", on_navigated)
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.dismiss()))


class CaptureEngine:
    def __init__(
        self,
        pool: BrowserPool,
        guard: EgressGuard,
        *,
        default_timeout_ms: int = 30_000,
        max_full_page_height: int = 16_384,
        max_navigations: int = 20,
        filter_lists: FilterLists | None = None,
        autoconsent_dir: Path = DEFAULT_AUTOCONSENT_DIR,
        archive_max_bytes: int = archive.DEFAULT_MAX_BYTES,
    ) -> None:
        self.pool = pool
        self.guard = guard
        self.filter_lists = filter_lists or FilterLists()
        self.default_timeout_ms = default_timeout_ms
        self.max_full_page_height = max_full_page_height
        self.max_navigations = max_navigations
        self.autoconsent_dir = autoconsent_dir
        self.archive_max_bytes = archive_max_bytes

    async def capture(self, options: CaptureOptions) -> CaptureResult:
        """Captures with a hard deadline enforced from outside the page."""
        timeout_ms = options.timeout_ms or self.default_timeout_ms
        # Room past the navigation timeout for rendering and evidence, then the page is cut off.
        deadline = timeout_ms / 1000 + min(10.0, max(3.0, timeout_ms / 2000))
        try:
            return await asyncio.wait_for(self._capture(options, timeout_ms), deadline)
        except TimeoutError:
            await self.pool.restart()
            raise CaptureFailed(
                f"the page did not answer within {deadline:.0f} s "
                "(a script may be stuck in a loop); the capture was stopped"
            ) from None

    async def _capture(self, options: CaptureOptions, timeout_ms: int) -> CaptureResult:
        started = time.perf_counter()
        watch = _Watch()
        context_options = _context_options(options, self.pool.user_agent)
        scale = float(context_options.get("device_scale_factor", 1))
        changes: dict[str, Any] = {}
        async with (
            page_filter(
                self.guard, self.filter_lists, options, own_lane=options.evidence
            ) as filtering,
            self.pool.context(**context_options, **filtering.context_options) as context,
        ):
            context.set_default_timeout(timeout_ms)
            await _add_cookies(context, options)
            consent = await ConsentHandler.attach(context, options.consent, self.autoconsent_dir)
            page = await context.new_page()
            cdp = await context.new_cdp_session(page)
            evidence = None
            if options.evidence:
                evidence = Evidence(cdp, options, max_bytes=self.archive_max_bytes)
                await evidence.start()
            hints = await emulation.present_as(cdp, context_options["user_agent"], options.locale)
            if options.media:
                # On this session: Playwright's own emulate_media does not hold once a second
                # CDP session is attached to the page.
                await cdp.send("Emulation.setEmulatedMedia", {"media": options.media})
            _watch_page(page, watch, self.max_navigations, count=options.scroll_lazy)
            response, load_timed_out = await self._navigate(page, options, timeout_ms, watch)
            navigated = time.perf_counter()
            if consent:
                await consent.settle(page, started + timeout_ms / 1000)
            if options.wait_for_selector:
                try:
                    await page.wait_for_selector(options.wait_for_selector, timeout=timeout_ms)
                except PlaywrightError:
                    raise CaptureFailed(
                        f"wait_for_selector {options.wait_for_selector!r} did not appear "
                        f"within {timeout_ms} ms"
                    ) from None
            if options.scroll_lazy:
                budget = min(timeout_ms // 2, SCROLL_BUDGET_MS)
                changes["scroll"] = await emulation.scroll_through(
                    page, self.max_full_page_height, budget
                )
                changes["scroll"]["network_settled"] = await watch.settled(budget / 1000 / 2)
            if options.hide_selectors:
                rule = ", ".join(options.hide_selectors) + " { visibility: hidden !important; }"
                await page.add_style_tag(content=rule)
                changes["hidden_selectors"] = list(options.hide_selectors)
            if options.delay_ms:
                await asyncio.sleep(options.delay_ms / 1000)
            await filtering.tidy(page)
            if options.freeze_animations:
                changes["frozen"] = await emulation.freeze(page)
            artifacts, truncated = await self._render(page, cdp, options, scale)
            shot = time.perf_counter()
            described = self._metadata(page, options, response, watch)
            if evidence is None:
                metadata = await described
            else:
                metadata, files = await evidence.collect(
                    described, filtering.lane, self.pool.browser_version
                )
                artifacts += [
                    CapturedArtifact(role, data, MEDIA_TYPES[role]) for role, data in files.items()
                ]
            filtering.annotate(metadata)
            if consent:
                metadata["consent"] = consent.record
            metadata.update(
                changes,
                emulation=_emulated(options, context_options, hints),
                truncated=truncated,
                load_timed_out=load_timed_out,
                timings_ms={
                    "navigation": round((navigated - started) * 1000),
                    "capture": round((shot - navigated) * 1000),
                    "total": _ms_since(started),
                    **({"evidence": evidence.spent} if evidence else {}),
                },
            )
        return CaptureResult(artifacts, metadata, _status_failure(options, response))

    async def _navigate(
        self, page: Page, options: CaptureOptions, timeout_ms: int, watch: _Watch
    ) -> tuple[Response | None, bool]:
        try:
            response = await page.goto(
                options.url, wait_until=options.wait_until, timeout=timeout_ms
            )
        except PlaywrightError as error:
            message = str(error).splitlines()[0].removeprefix("Page.goto: ")
            browser = page.context.browser
            if browser is None or not browser.is_connected():
                raise BrowserGone(f"the browser exited during the capture ({message})") from None
            if watch.navigations > self.max_navigations or page.is_closed():
                raise CaptureFailed(
                    f"the page navigated more than {self.max_navigations} times; stopped"
                ) from None
            refused = ("ERR_TUNNEL_CONNECTION_FAILED", "ERR_HTTP_RESPONSE_CODE_FAILURE")
            if watch.blocked and any(code in message for code in refused):
                raise CaptureFailed(self._refusal(watch.blocked[-1]["url"])) from None
            if "Timeout" in message and page.url not in ("", "about:blank"):
                return None, True
            raise CaptureFailed(f"navigation to {options.url} failed: {message}") from None
        if response is not None and response.headers.get(DENIED_HEADER.lower()) == "denied":
            raise CaptureFailed(self._refusal(response.url))
        return response, False

    def _refusal(self, url: str) -> str:
        host = (urlsplit(url).hostname or "").lower()
        reasons = [d.reason for d in self.guard.denials if d.host.strip("[]").lower() == host]
        reason = f": {reasons[-1]}" if reasons else ""
        return f"the egress guard refused to connect to {url}{reason}"

    async def _render(
        self, page: Page, cdp: CDPSession, options: CaptureOptions, scale: float
    ) -> tuple[list[CapturedArtifact], bool]:
        if options.format == "pdf":
            data = await page.pdf(print_background=True)
            return [CapturedArtifact("pdf", data, MEDIA_TYPES["pdf"])], False
        clip, truncated, beyond = await screenshots.clip_region(
            page, cdp, options, self.max_full_page_height, scale
        )
        data = await screenshots.screenshot(cdp, options, clip, beyond)
        width, height = screenshots.pixel_size(data)
        return [
            CapturedArtifact("image", data, MEDIA_TYPES[options.format], width, height)
        ], truncated

    async def _metadata(
        self, page: Page, options: CaptureOptions, response: Response | None, watch: _Watch
    ) -> dict[str, Any]:
        facts = await page.evaluate(
            "({ua: navigator.userAgent, title: document.title, dpr: window.devicePixelRatio,"
            " mobile: navigator.userAgentData ? navigator.userAgentData.mobile : null})"
        )
        host = urlsplit(page.url).hostname or ""
        metadata: dict[str, Any] = {
            "requested_url": options.url,
            "final_url": page.url,
            "http_status": response.status if response else None,
            "resolved_ip": self.guard.resolved_address(host),
            "title": facts["title"],
            "viewport": {**(page.viewport_size or {}), "device_scale_factor": facts["dpr"]},
            "user_agent": describe_user_agent(facts["ua"]),
            "device": options.device,
            "selector": options.selector,
            "blocked_requests": watch.blocked[:100],
            "navigations": watch.navigations,
            "captured_at": iso(datetime.now(UTC)),
        }
        if response is not None:
            details = await response.security_details()
            if details:
                metadata["tls"] = {
                    "protocol": details.get("protocol"),
                    "subject": details.get("subjectName"),
                    "issuer": details.get("issuer"),
                    "valid_from": details.get("validFrom"),
                    "valid_to": details.get("validTo"),
                }
        return metadata


def _ms_since(began: float) -> int:
    return round((time.perf_counter() - began) * 1000)
