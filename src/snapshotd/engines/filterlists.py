"""The filter lists behind `block_ads` and `block_trackers`: EasyList (reason "ad") and
EasyPrivacy (reason "tracker"), as Debian's uBlock Origin package ships them, compiled by `adblock`
(Brave's adblock-rust).

Compiling a list takes about 0.2 s, so each list is compiled once per process, the first time a
capture asks for it, off the event loop, and shared by every worker thread after that.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import adblock

from snapshotd.errors import CaptureFailed

__all__ = ["DEFAULT_FOLDER", "LISTS", "FilterLists", "PageRules"]

DEFAULT_FOLDER = Path("/usr/share/chromium/extensions/ublock-origin/assets/thirdparties/easylist")

# Reason recorded for a blocked request -> the list file that decides it, in the order asked.
LISTS = {"ad": "easylist.txt", "tracker": "easyprivacy.txt"}

# A host is refused at CONNECT time only when its rules block it as every one of these, so a
# rule for a host's scripts alone does not also take its images away.
_HOST_TYPES = (
    "image",
    "script",
    "stylesheet",
    "sub_frame",
    "xmlhttprequest",
    "font",
    "media",
    "object",
    "ping",
    "websocket",
    "other",
)
# Sec-Fetch-Dest -> adblock's request type. Top-level documents are never blocked.
_DESTINATIONS = {
    "iframe": "sub_frame",
    "frame": "sub_frame",
    "image": "image",
    "script": "script",
    "style": "stylesheet",
    "font": "font",
    "audio": "media",
    "video": "media",
    "track": "media",
    "object": "object",
    "embed": "object",
    "worker": "script",
    "sharedworker": "script",
    "serviceworker": "script",
    "report": "csp_report",
    "empty": "xmlhttprequest",
}

_compiled: dict[Path, adblock.Engine] = {}
_compiling = threading.Lock()


def _compile(path: Path) -> adblock.Engine:
    with _compiling:
        engine = _compiled.get(path)
        if engine is None:
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as error:
                raise CaptureFailed(
                    f"the filter list {path} cannot be read ({error.strerror}); install Debian's "
                    "webext-ublock-origin-chromium or point SNAPSHOTD_FILTER_LISTS_DIR at a "
                    "folder holding easylist.txt and easyprivacy.txt"
                ) from None
            rules = adblock.FilterSet()
            rules.add_filter_list(text)
            engine = _compiled[path] = adblock.Engine(rules)
        return engine


class FilterLists:
    """The lists in one folder, compiled on first use."""

    def __init__(self, folder: Path = DEFAULT_FOLDER) -> None:
        self.folder = folder

    async def engines(self, reasons: Sequence[str]) -> list[tuple[str, adblock.Engine]]:
        paths = [(reason, self.folder / LISTS[reason]) for reason in reasons]
        if all(path in _compiled for _, path in paths):
            return [(reason, _compiled[path]) for reason, path in paths]
        return [(reason, await asyncio.to_thread(_compile, path)) for reason, path in paths]


def _request_type(headers: Sequence[tuple[str, str]]) -> str | None:
    """What kind of load a plain-http request is, from what Chromium sends with it; None for a
    top-level document. Sec-Fetch-Dest is sent only to trustworthy origins, so Accept decides the
    rest."""
    fields = {name.lower(): value.strip().lower() for name, value in headers}
    destination = fields.get("sec-fetch-dest")
    if destination == "document":
        return None
    if destination in _DESTINATIONS:
        return _DESTINATIONS[destination]
    accept = fields.get("accept", "")
    if accept.startswith("text/html"):
        return "sub_frame"
    if accept.startswith("image/"):
        return "image"
    if accept.startswith("text/css"):
        return "stylesheet"
    return "other"


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").removesuffix(".")


class PageRules:
    """The lists' verdicts for one capture, judged against its page URL: which requests are
    blocked (first or third party by the page's site), and which elements are hidden."""

    def __init__(self, page_url: str, engines: Sequence[tuple[str, adblock.Engine]]) -> None:
        self.page_url = page_url
        self.page_host = _host(page_url)
        self.engines = list(engines)
        self._hosts: dict[str, str | None] = {}

    def refusal(self, url: str, headers: Sequence[tuple[str, str]] | None) -> str | None:
        if _host(url) == self.page_host:
            return None
        if headers is None:
            if url not in self._hosts:
                self._hosts[url] = self._host_refusal(url)
            return self._hosts[url]
        kind = _request_type(headers)
        if kind is None:
            return None
        for reason, engine in self.engines:
            if engine.check_network_urls(url, self.page_url, kind).matched:
                return reason
        return None

    def _host_refusal(self, url: str) -> str | None:
        for reason, engine in self.engines:
            if all(engine.check_network_urls(url, self.page_url, t).matched for t in _HOST_TYPES):
                return reason
        return None

    def hiding(
        self, url: str, classes: Sequence[str], ids: Sequence[str]
    ) -> tuple[set[str], dict[str, list[str]]]:
        """The element-hiding selectors and styled selectors for a document at `url` that uses
        `classes` and `ids`."""
        hidden: set[str] = set()
        styled: dict[str, list[str]] = {}
        for _, engine in self.engines:
            specific = engine.url_cosmetic_resources(url)
            generic = engine.hidden_class_id_selectors(
                list(classes), list(ids), specific.exceptions
            )
            hidden |= (specific.hide_selectors | set(generic)) - specific.exceptions
            for selector, declarations in specific.style_selectors.items():
                styled.setdefault(selector, []).extend(declarations)
        return hidden, styled
