"""The evidence a capture keeps beside its picture, all of it read from inside Chromium through
the capture's own CDP session:

- `html`: the document as Chromium serializes it once the picture is taken;
- `har`: every HTTP exchange the page made (`engines/har.py`);
- `certificate_chain` and the metadata's `provenance`: the top-level origin's certificates, the
  DNS answers the egress guard used, the options (`engines/provenance.py`);
- `wacz`: the web archive of those exchanges with their bodies (`engines/archive.py`).

`Evidence.start` begins recording before the page navigates; `Evidence.collect` gathers the parts
side by side once the picture is taken (each mostly waits on Chromium or a thread) and keeps each
part's own milliseconds in `spent`, so its cost can be told apart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

from playwright.async_api import CDPSession

from snapshotd.engines import archive, har, provenance
from snapshotd.engines.lanes import Lane

if TYPE_CHECKING:
    from snapshotd.engines.capture import CaptureOptions

__all__ = ["Evidence"]

T = TypeVar("T")


class Evidence:
    """One capture's evidence, from `start()` before the navigation to `collect()` after the
    picture."""

    def __init__(self, cdp: CDPSession, options: CaptureOptions, *, max_bytes: int) -> None:
        self.cdp = cdp
        self.options = options
        self.archive = archive.WebArchive(cdp, max_bytes=max_bytes)
        self.recorder = har.HarRecorder(
            cdp,
            hidden_headers=options.headers,
            hidden_cookies=[cookie.name for cookie in options.cookies],
            on_finished=self.archive.finished,
            buffer_bytes=self.archive.buffer_bytes,
        )
        self.spent: dict[str, int] = {}

    async def start(self) -> None:
        await self.recorder.start()

    async def collect(
        self, described: Awaitable[dict[str, Any]], lane: Lane | None, browser_version: str
    ) -> tuple[dict[str, Any], dict[str, bytes]]:
        """The capture's metadata (what `described` gives, with `provenance` and `archive`
        added) and the evidence files by role."""
        # The DOM is read while the metadata is gathered: both only wait on Chromium.
        html = asyncio.ensure_future(self._timed("html", self._document()))
        try:
            metadata = await described
        except BaseException:
            html.cancel()
            raise
        (
            document,
            (files, metadata["provenance"]),
            (archived, metadata["archive"]),
        ) = await asyncio.gather(
            html,
            self._timed(
                "provenance",
                provenance.gather(
                    self.cdp, self.recorder, lane, self.options, metadata, browser_version
                ),
            ),
            self._timed(
                "wacz",
                self.archive.package(
                    self.recorder,
                    page_url=metadata["final_url"],
                    title=metadata["title"],
                    addresses=provenance.addresses(lane),
                ),
            ),
        )
        files = {"html": document, **files}
        if archived is not None:
            files["wacz"] = archived
        return metadata, files

    async def _document(self) -> bytes:
        # Serialized by Chromium itself: the same markup as page.content(), with no script the
        # page could have overridden, and without Playwright's utility world (which costs the
        # renderer more than the serialization). The page's resources are in the web archive,
        # which replaced the MHTML that captures used to keep as well.
        document = await self.cdp.send("DOM.getDocument", {"depth": 0})
        markup = await self.cdp.send("DOM.getOuterHTML", {"nodeId": document["root"]["nodeId"]})
        await self.cdp.send("DOM.disable")
        return str(markup["outerHTML"]).encode()

    async def _timed(self, part: str, work: Awaitable[T]) -> T:
        began = time.perf_counter()
        try:
            return await work
        finally:
            self.spent[part] = round((time.perf_counter() - began) * 1000)
