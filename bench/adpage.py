"""An ad-heavy page: an article with 30 ad and tracker subresources that are slow to answer.

The host names come from the EasyList and EasyPrivacy files Debian installs with uBlock Origin, so
a blocker that uses those lists recognises them. One loopback server answers for every name, each
200-400 ms late as real ad servers are, and snapshotd's server resolves the names to 127.0.0.1.
The figure is throughput with `block_ads` and `block_trackers` against the same capture without.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from bench.client import BenchFailure, NativeClient
from bench.corpus import LoopbackServer, Pass, measured_pass, profile
from bench.report import Row
from bench.server import SnapshotdServer

LISTS = Path("/usr/share/chromium/extensions/ublock-origin/assets/thirdparties/easylist")
CONCURRENCY = 2
TARGET = 1.5
# A rule that blocks a whole domain and nothing else: `||example.com^`.
_DOMAIN_RULE = re.compile(r"\|\|([a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,})\^")
_EXCEPTION = re.compile(r"@@\|\|([a-z0-9.-]+)")
# A transparent 1x1 GIF, as tracking pixels are.
PIXEL = bytes.fromhex(
    "47494638396101000100800000ffffff00000021f90401000000002c00000000010001000002024401003b"
)


def list_hosts(name: str, count: int) -> list[str]:
    """`count` host names blocked outright by list `name`, spread evenly over its sorted rules
    and never named by one of its exceptions, so the same list file gives the same names."""
    text = (LISTS / f"{name}.txt").read_text(errors="replace")
    excepted = set(_EXCEPTION.findall(text))
    names = sorted(
        {m[1] for line in text.splitlines() if (m := _DOMAIN_RULE.fullmatch(line.strip()))}
        - excepted
    )
    if len(names) < count:
        raise BenchFailure(f"{name}.txt names only {len(names)} blockable hosts")
    step = len(names) / count
    return [names[int(i * step)] for i in range(count)]


@dataclass(frozen=True)
class Subresource:
    host: str
    kind: str  # "frame", "script" or "pixel"

    @property
    def delay(self) -> float:
        """200-400 ms, fixed per host so that both runs wait the same."""
        return 0.2 + (zlib.crc32(self.host.encode()) % 201) / 1000

    def tag(self, port: int) -> str:
        base = f"http://{self.host}:{port}"
        if self.kind == "frame":
            return f"<iframe src='{base}/frame.html' width='300' height='250'></iframe>"
        if self.kind == "script":
            return f"<script async src='{base}/tag.js'></script>"
        return f"<img src='{base}/pixel.gif' width='1' height='1' alt=''>"


def subresources() -> list[Subresource]:
    """10 ad frames and 5 ad scripts from EasyList, 5 tracker scripts and 10 pixels from
    EasyPrivacy: 30 in all."""
    ads, trackers = list_hosts("easylist", 15), list_hosts("easyprivacy", 15)
    return (
        [Subresource(host, "frame") for host in ads[:10]]
        + [Subresource(host, "script") for host in ads[10:] + trackers[:5]]
        + [Subresource(host, "pixel") for host in trackers[5:]]
    )


def build_page(items: list[Subresource], port: int) -> bytes:
    paragraph = (
        "<p>Snapshots of pages as readers saw them are kept as evidence: the screenshot, the "
        "document and an archive of every resource, stamped with the time they were taken.</p>"
    )
    blocks = []
    for index, item in enumerate(items):
        blocks.append(paragraph * 2 + item.tag(port))
        if index % 5 == 4:
            blocks.append(f"<h2>Section {index // 5 + 1}</h2>")
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>An article</title>"
        "<style>body{font:16px/1.5 serif;max-width:760px;margin:0 auto;padding:16px}"
        "iframe{display:block;border:0;margin:12px auto}</style></head><body>"
        f"<h1>An article with advertising</h1>{''.join(blocks)}</body></html>"
    ).encode()


class AdServer:
    """Answers for every host name on one loopback port: the article for 127.0.0.1, ads (late)
    for the rest."""

    def __init__(self, items: list[Subresource]) -> None:
        delays = {item.host: item.delay for item in items}
        served: dict[str, int] = {}
        self.served = served
        lock = threading.Lock()
        page: list[bytes] = []
        self._page = page

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                host = (self.headers.get("host") or "").rsplit(":", 1)[0].lower()
                path = self.path.split("?")[0]
                if host in delays:
                    with lock:
                        served[host] = served.get(host, 0) + 1
                    time.sleep(delays[host])
                body, media = _answer(host, path, page[0])
                self.send_response(200 if body else 404)
                self.send_header("content-type", media)
                self.send_header("cache-control", "no-store")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = LoopbackServer(("127.0.0.1", 0), Handler)
        self.port = int(self.httpd.server_address[1])
        page.append(build_page(items, self.port))
        self.url = f"http://127.0.0.1:{self.port}/"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> AdServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _answer(host: str, path: str, page: bytes) -> tuple[bytes, str]:
    if path == "/frame.html":
        ad = "<body style='margin:0;background:#fde8c8;font:20px sans-serif'><p>Advert</p></body>"
        return ad.encode(), "text/html; charset=utf-8"
    if path == "/tag.js":
        return b"window.adTags = (window.adTags || 0) + 1;", "text/javascript"
    if path == "/pixel.gif":
        return PIXEL, "image/gif"
    if path == "/" and host in ("127.0.0.1", "localhost"):
        return page, "text/html; charset=utf-8"
    return b"", "text/plain"


def serve_prefix_resolving_to_loopback(names: list[str], folder: Path) -> list[str] | None:
    """A command prefix under which `names` resolve to 127.0.0.1 for the server it starts.

    snapshotd's egress guard resolves every name itself (getaddrinfo). Its pinned names
    (`capture_stack(hosts=...)`) are open to in-process callers only, not a setting of
    `snapshotd serve`, so the server is started in its own mount namespace with an /etc/hosts
    that adds the names; nothing outside it changes. None where namespaces are not allowed. A
    setting that pins names would replace this.
    """
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    hosts = folder / "hosts"
    original = Path("/etc/hosts").read_text() if Path("/etc/hosts").exists() else ""
    hosts.write_text(f"{original.rstrip()}\n127.0.0.1 {' '.join(names)}\n")
    bind = 'mount --bind "$0" /etc/hosts && exec "$@"'
    as_root = [unshare, "--mount"] if os.geteuid() == 0 else [unshare, "--map-root-user", "--mount"]
    prefix = [*as_root, "--", "sh", "-c", bind, str(hosts)]
    probe = [*prefix, "getent", "hosts", names[0]]
    try:
        answer = subprocess.run(probe, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return None
    return prefix if answer.stdout.startswith("127.0.0.1") else None


@dataclass
class AdResult:
    subresources: int
    plain: Pass
    blocking: Pass
    served_plain: int
    served_blocking: int


def run(quick: bool, say: Callable[[str], None]) -> AdResult | str:
    """The figures, or why they could not be taken."""
    if not LISTS.is_dir():
        return "ad page: webext-ublock-origin-chromium is not installed (make bench installs it)"
    items = subresources()
    with tempfile.TemporaryDirectory(prefix="snapshotd-bench-hosts-") as folder:
        prefix = serve_prefix_resolving_to_loopback([item.host for item in items], Path(folder))
        if prefix is None:
            return (
                "ad page: could not make the ad host names resolve to 127.0.0.1 for snapshotd "
                "(no mount namespace here); rows skipped"
            )
        return _measure(items, prefix, 6 if quick else 24, say)


def _measure(
    items: list[Subresource], prefix: list[str], shots: int, say: Callable[[str], None]
) -> AdResult:
    with AdServer(items) as ads:
        say(f"ad page: {len(items)} ad and tracker subresources, 200-400 ms each, at {ads.url}")
        with (
            SnapshotdServer(concurrency=CONCURRENCY, prefix=prefix) as server,
            NativeClient(server.url, server.token) as client,
        ):
            blocking = {"block_ads": True, "block_trackers": True}
            urls = [ads.url] * shots
            try:
                # Warm both ways: the first blocking capture of a worker reads the filter lists.
                client.batch(ads.url, CONCURRENCY, evidence=True)
                client.batch(ads.url, CONCURRENCY * 2, evidence=True, options=blocking)
                say(f"ad page: {shots} snapshots without blocking, then {shots} with")
                before = sum(ads.served.values())
                plain = measured_pass(server, client, urls, evidence=True)
                middle = sum(ads.served.values())
                blocked = measured_pass(server, client, urls, evidence=True, options=blocking)
                after = sum(ads.served.values())
            except BenchFailure as error:
                raise BenchFailure(f"ad page: {error}\nserve log:\n{server.log_tail()}") from error
    return AdResult(len(items), plain, blocked, middle - before, after - middle)


def describe(result: AdResult) -> str:
    plain, blocking = result.plain, result.blocking
    return "\n".join(
        [
            f"ad page: an article with {result.subresources} subresources on EasyList and "
            "EasyPrivacy hosts, each answered 200-400 ms late on loopback;",
            f"  snapshotd serve at c={CONCURRENCY}, 1280x800 PNG with evidence. CPU per capture "
            "by process, ms:",
            f"    without blocking: {profile(plain.cpu_by_kind, len(plain.series))}",
            f"    with blocking:    {profile(blocking.cpu_by_kind, len(blocking.series))}",
        ]
    )


def rows(result: AdResult) -> list[Row]:
    plain, blocking = result.plain, result.blocking
    rate, base = blocking.series.rate, plain.series.rate
    ratio = rate / base if base else 0.0
    return [
        Row(
            f"ad page: block_ads+block_trackers vs none: shots/s (n={len(blocking.series)})",
            f"{rate:.2f}",
            f"{base:.2f}",
            f"{ratio:.2f}x",
            f">= {TARGET:.2f}x",
            "yes" if ratio >= TARGET else "NO",
        ),
        Row(
            "  ad page: engine ms per capture, p50 with / without blocking",
            f"{blocking.engine_p50:.0f} / {plain.engine_p50:.0f} ms",
        ),
        Row(
            "  ad page: CPU per capture with / without blocking",
            f"{blocking.cpu_ms:.0f} / {plain.cpu_ms:.0f} ms",
            ratio=f"{blocking.cpu_ms / plain.cpu_ms:.2f}x" if plain.cpu_ms else "-",
        ),
        Row(
            f"  ad requests served per capture (of {result.subresources})",
            f"{result.served_blocking / len(blocking.series):.1f} / "
            f"{result.served_plain / len(plain.series):.1f}",
        ),
    ]
