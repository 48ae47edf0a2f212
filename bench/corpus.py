"""Real-world pages: 40 pages of the Python documentation (Debian's python3-doc) on loopback.

snapshotd captures them through its API, with evidence, against the naive Playwright loop on the
same headless shell and the same URLs; the CPU of every process on each side is summed; and the
cost of `scroll_lazy` on full-page captures is measured on the same pages.
"""

from __future__ import annotations

import functools
import statistics
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench import baseline, proc
from bench.client import BenchFailure, NativeClient
from bench.report import Row
from bench.server import SnapshotdServer
from bench.stats import Series

DOC_ROOTS = (Path("/usr/share/doc/python3/html"), Path("/usr/share/doc/python3-doc/html"))
PAGES = 40
CONCURRENCY = 2
THROUGHPUT_TARGET = 1.1
CPU_TARGET = 1.1
# Pages taken from each part of the documentation, spread evenly over its sorted file names.
SECTIONS = (
    ("library", 22),
    ("tutorial", 6),
    ("reference", 4),
    ("howto", 3),
    ("faq", 2),
    ("using", 1),
    ("whatsnew", 1),
)
# Generated indexes (genindex-all alone is 1.7 MB) and tables of contents are lists of links,
# not pages anyone captures, so they are left out.
SKIPPED = ("genindex", "py-modindex", "search", "index")


def doc_root() -> Path | None:
    return next((root for root in DOC_ROOTS if (root / "glossary.html").is_file()), None)


def _spread(names: list[str], count: int) -> list[str]:
    if len(names) <= count:
        return names
    step = len(names) / count
    return [names[int(i * step + step / 2)] for i in range(count)]


def pick_pages(root: Path) -> list[str]:
    """40 page paths under `root`, the same ones for the same package version."""
    pages = ["glossary.html"]
    for section, count in SECTIONS:
        names = sorted(
            path.relative_to(root).as_posix()
            for path in (root / section).glob("*.html")
            if not path.stem.startswith(SKIPPED)
        )
        pages += _spread(names, count)
    return pages[:PAGES]


class LoopbackServer(ThreadingHTTPServer):
    """A threaded server whose listen queue holds a page's burst of subresource connections (the
    default of 5 drops the rest, and each retried SYN costs a second)."""

    daemon_threads = True
    request_queue_size = 128


class StaticServer:
    """Serves a folder on 127.0.0.1 (keep-alive, one thread per connection)."""

    def __init__(self, root: Path) -> None:
        class Handler(SimpleHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

        handler = functools.partial(Handler, directory=str(root))
        self.httpd = LoopbackServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> StaticServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class Pass:
    """One pass of snapshots over the corpus, with what every serve process spent on it."""

    series: Series
    cpu_by_kind: dict[str, float]
    status_reads: int
    # The engine's own time per capture (metadata timings_ms.total), queueing left out.
    engine_ms: list[float]

    @property
    def cpu_ms(self) -> float:
        return sum(self.cpu_by_kind.values()) * 1000 / len(self.series)

    @property
    def engine_p50(self) -> float:
        return statistics.median(self.engine_ms) if self.engine_ms else 0.0

    def __add__(self, other: Pass) -> Pass:
        """Two passes taken one after the other, as one."""
        series = Series(self.series.samples + other.series.samples)
        series.wall = (self.series.wall or 0.0) + (other.series.wall or 0.0)
        kinds = self.cpu_by_kind.keys() | other.cpu_by_kind.keys()
        spent = {k: self.cpu_by_kind.get(k, 0.0) + other.cpu_by_kind.get(k, 0.0) for k in kinds}
        reads = self.status_reads + other.status_reads
        return Pass(series, spent, reads, self.engine_ms + other.engine_ms)


@dataclass
class CorpusResult:
    pages: int
    root: Path
    loop: baseline.LoopResult
    evidence: Pass
    plain: Pass | None
    full_page: Pass
    scroll_lazy: Pass


def measured_pass(
    server: SnapshotdServer,
    client: NativeClient,
    urls: list[str],
    *,
    evidence: bool,
    options: dict[str, bool] | None = None,
) -> Pass:
    assert server.process is not None
    """Snapshots of `urls`, one each, and what every serve process spent on them."""
    bodies: list[dict[str, Any]] = []
    reads = client.status_reads
    before = proc.tree_cpu_by_kind(server.process.pid)
    series = client.batch(urls, len(urls), evidence=evidence, options=options, finished=bodies)
    after = proc.tree_cpu_by_kind(server.process.pid)
    # A kind that vanished meanwhile (a recycled browser) was reaped into its parent's figure.
    spent = {name: after[name] - before.get(name, 0.0) for name in after}
    engine = [float(body["metadata"]["timings_ms"]["total"]) for body in bodies]
    return Pass(series, spent, client.status_reads - reads, engine)


def run(quick: bool, say: Callable[[str], None]) -> CorpusResult | None:
    root = doc_root()
    if root is None:
        say("corpus: python3-doc is not installed (make bench installs it); rows skipped")
        return None
    pages = pick_pages(root)
    with StaticServer(root) as static:
        urls = [static.url + page for page in pages]
        say(f"corpus: {len(urls)} pages of {root} at {static.url}")
        say(f"corpus baseline: naive Playwright loop over the {len(urls)} pages")
        loop = baseline.playwright_loop(urls, len(urls))
        say(f"[snapshotd c={CONCURRENCY}] corpus: starting snapshotd serve")
        with (
            SnapshotdServer(concurrency=CONCURRENCY) as server,
            NativeClient(server.url, server.token) as client,
        ):
            try:
                return _passes(server, client, root, urls, loop, quick, say)
            except BenchFailure as error:
                raise BenchFailure(f"corpus: {error}\nserve log:\n{server.log_tail()}") from error


def _passes(
    server: SnapshotdServer,
    client: NativeClient,
    root: Path,
    urls: list[str],
    loop: baseline.LoopResult,
    quick: bool,
    say: Callable[[str], None],
) -> CorpusResult:
    client.batch(urls[: CONCURRENCY * 2], CONCURRENCY * 2, evidence=True)
    say(f"corpus: {len(urls)} async snapshots with evidence; load {proc.load_average():.2f}")
    evidence = measured_pass(server, client, urls, evidence=True)
    plain = None
    if not quick:
        say(f"corpus: {len(urls)} async snapshots without evidence, to see what evidence costs")
        plain = measured_pass(server, client, urls, evidence=False)
    # Full pages of the longest documents take seconds each: --quick takes every fourth page.
    tall = urls[:: 4 if quick else 1]
    say(f"corpus: {len(tall)} full-page snapshots with scroll_lazy off, and {len(tall)} with it on")
    off = {"full_page": True, "scroll_lazy": False}
    on = {"full_page": True, "scroll_lazy": True}
    # Off, on, on, off over two halves of the pages, so that a drift in the machine's load
    # during the four passes weighs on both alike.
    first, second = tall[: len(tall) // 2], tall[len(tall) // 2 :]
    full = measured_pass(server, client, first, evidence=False, options=off)
    lazy = measured_pass(server, client, first, evidence=False, options=on)
    lazy += measured_pass(server, client, second, evidence=False, options=on)
    full += measured_pass(server, client, second, evidence=False, options=off)
    return CorpusResult(len(urls), root, loop, evidence, plain, full, lazy)


def _met(ok: bool) -> str:
    return "yes" if ok else "NO"


def profile(spent: dict[str, float], shots: int) -> str:
    ranked = sorted(spent.items(), key=lambda item: -item[1])
    return ", ".join(f"{name} {seconds * 1000 / shots:.0f}" for name, seconds in ranked if seconds)


def describe(result: CorpusResult) -> str:
    evidence, plain, loop = result.evidence, result.plain, result.loop
    reads = evidence.status_reads / len(evidence.series)
    lines = [
        f"corpus: {result.pages} pages of the Python documentation ({result.root}), served on "
        "loopback by a threaded static server;",
        "  1280x800 PNG, fresh context per shot; snapshotd through its native API at "
        f"c={CONCURRENCY}, waiting as a client would ({reads:.1f} "
        "status reads a capture);",
        "  CPU is user + system time of every process on each side (snapshotd serve and its "
        "descendants; the loop's Python thread, Playwright's driver and Chromium), exited ones "
        "included.",
        "  CPU per capture by process, ms (exited renderers count under the zygote that forked "
        "them):",
        f"    snapshotd, evidence on:  {profile(evidence.cpu_by_kind, len(evidence.series))}",
    ]
    if plain is not None:
        lines.append(
            f"    snapshotd, evidence off: {profile(plain.cpu_by_kind, len(plain.series))}"
        )
    lines.append(f"    Playwright loop:         {profile(loop.tree_cpu_by_kind, len(loop.series))}")
    return "\n".join(lines)


def rows(result: CorpusResult) -> list[Row]:
    loop = result.loop.series
    rate, base = result.evidence.series.rate, loop.rate
    ratio = rate / base if base else 0.0
    table = [
        Row(f"corpus: Playwright loop shots/s (n={len(loop)})", f"{base:.2f}"),
        Row(
            f"corpus: snapshotd c={CONCURRENCY} async, evidence on: shots/s",
            f"{rate:.2f}",
            f"{base:.2f}",
            f"{ratio:.2f}x",
            f">= {THROUGHPUT_TARGET:.2f}x",
            _met(ratio >= THROUGHPUT_TARGET),
        ),
    ]
    base_cpu = result.loop.tree_cpu_ms
    if base_cpu:
        cpu = result.evidence.cpu_ms
        table.append(
            Row(
                "corpus: CPU per capture, all processes, evidence on",
                f"{cpu:.0f} ms",
                f"{base_cpu:.0f} ms (loop)",
                f"{cpu / base_cpu:.2f}x",
                f"<= {CPU_TARGET:.2f}x",
                _met(cpu <= CPU_TARGET * base_cpu),
            )
        )
        if result.plain is not None:
            plain = result.plain.cpu_ms
            table.append(
                Row(
                    "  CPU per capture, evidence off",
                    f"{plain:.0f} ms",
                    f"{base_cpu:.0f} ms (loop)",
                    f"{plain / base_cpu:.2f}x",
                )
            )
    full, lazy = result.full_page, result.scroll_lazy
    if full.series.rate:
        table += [
            Row(
                f"corpus: full page, scroll_lazy on vs off: shots/s (n={len(lazy.series)})",
                f"{lazy.series.rate:.2f}",
                f"{full.series.rate:.2f}",
                f"{lazy.series.rate / full.series.rate:.2f}x",
            ),
            Row(
                "  scroll_lazy: engine ms per capture, p50 on / off",
                f"{lazy.engine_p50:.0f} / {full.engine_p50:.0f} ms",
                ratio=f"{lazy.engine_p50 - full.engine_p50:+.0f} ms",
            ),
        ]
    return table
