"""Taking the picture: which region of the page to capture, and capturing it through CDP
`Page.captureScreenshot` with `optimizeForSpeed` (about half the PNG encode time of Playwright's
own path; WebP too)."""

from __future__ import annotations

import asyncio
import base64
import io
from typing import TYPE_CHECKING, Any

from PIL import Image
from playwright.async_api import CDPSession, Page
from playwright.async_api import Error as PlaywrightError

from snapshotd.errors import CaptureFailed

if TYPE_CHECKING:
    from snapshotd.engines.capture import CaptureOptions


def pixel_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


async def screenshot(
    cdp: CDPSession, options: CaptureOptions, clip: dict[str, float], beyond: bool
) -> bytes:
    # Painting beyond the viewport costs the renderer about a fifth more CPU on an ordinary page,
    # so it is asked for only when the clip leaves the viewport (a full page, a low element).
    params: dict[str, Any] = {
        "format": options.format,
        "optimizeForSpeed": True,
        "clip": clip,
        "captureBeyondViewport": beyond,
    }
    if options.format in ("jpeg", "webp"):
        params["quality"] = options.quality or 85
    for attempt in (1, 2):
        try:
            result = await cdp.send("Page.captureScreenshot", params)
            return base64.b64decode(result["data"])
        except PlaywrightError as error:
            # Chromium occasionally refuses right after a navigation; once more is enough.
            if attempt == 2 or "Unable to capture screenshot" not in str(error):
                raise
            await asyncio.sleep(0.05)
    raise AssertionError("unreachable")


async def clip_region(
    page: Page, cdp: CDPSession, options: CaptureOptions, max_height: int, scale: float
) -> tuple[dict[str, float], bool, bool]:
    """The region to capture in CSS pixels of the document, with the factor to device pixels (the
    device scale factor times the page zoom: a phone shows a 980 px layout zoomed out); whether
    it was cut at `max_height`; and whether it reaches outside the viewport."""
    metrics = await cdp.send("Page.getLayoutMetrics")
    viewport = metrics["cssVisualViewport"]
    scale *= viewport.get("scale", 1) * viewport.get("zoom", 1)
    if options.selector:
        locator = page.locator(options.selector).first
        try:
            await locator.wait_for(state="visible", timeout=5000)
        except PlaywrightError:
            raise CaptureFailed(
                f"selector {options.selector!r} matched no visible element"
            ) from None
        box = await locator.bounding_box()
        if not box or box["width"] < 1 or box["height"] < 1:
            raise CaptureFailed(f"element {options.selector!r} has no size on the page")
        scroll = await page.evaluate("[window.scrollX, window.scrollY]")
        height = min(box["height"], max_height)
        x, y = box["x"] + scroll[0], box["y"] + scroll[1]
        clip = {"x": x, "y": y, "width": box["width"], "height": height, "scale": scale}
        inside = (
            viewport["pageX"] <= x
            and viewport["pageY"] <= y
            and x + box["width"] <= viewport["pageX"] + viewport["clientWidth"]
            and y + height <= viewport["pageY"] + viewport["clientHeight"]
        )
        return clip, height < box["height"], not inside
    if options.full_page:
        full = max(metrics["cssContentSize"]["height"], viewport["clientHeight"])
        height = min(full, max_height)
        width = viewport["clientWidth"]
        clip = {"x": 0, "y": 0, "width": width, "height": height, "scale": scale}
        return clip, full > max_height, True
    clip = {
        "x": viewport["pageX"],
        "y": viewport["pageY"],
        "width": viewport["clientWidth"],
        "height": viewport["clientHeight"],
        "scale": scale,
    }
    return clip, False, False
