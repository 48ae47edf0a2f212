"""What evidence costs: captures with the whole evidence set (DOM HTML, the HAR, the
certificate chain and DNS answers, the WACZ archive, a signed manifest and a trusted timestamp from
a local RFC 3161 TSA) against the same captures with evidence off, on the bench page and on the
python-doc corpus, in one snapshotd serve.

Passes run off, on, on, off over two halves of the pages, so a drift in the machine's load weighs
on both sides alike. An evidence pass ends when its last timestamp token has arrived, not when the
last picture did: the timestamp jobs share the workers with the captures.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.tsa import LocalTsa

from bench import proc
from bench.client import BenchFailure, NativeClient
from bench.corpus import StaticServer, doc_root, pick_pages
from bench.pages import PageServer, build_page
from bench.report import Row
from bench.server import SnapshotdServer
from bench.stats import Series

CONCURRENCY = 2
TARGET = 0.9
STAMP_TIMEOUT = 60.0


@dataclass
class Side:
    """Passes of one kind (evidence on or off) over one set of pages, added up."""

    shots: int = 0
    wall: float = 0.0
    stamp_wait: float = 0.0  # of `wall`, the time from the last picture to the last token
    cpu: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    # Per evidence part: the engine's milliseconds per capture, and the bytes it stored.
    part_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    part_bytes: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))

    @property
    def rate(self) -> float:
        return self.shots / self.wall if self.wall else 0.0


@dataclass
class Subject:
    name: str
    pages: int
    on: Side = field(default_factory=Side)
    off: Side = field(default_factory=Side)


@dataclass
class EvidenceResult:
    subjects: list[Subject]
    tsa_requests: int


def _wait_for_stamps(client: NativeClient, bodies: list[dict[str, Any]]) -> None:
    """Waits until every snapshot's timestamp token has arrived."""
    deadline = time.monotonic() + STAMP_TIMEOUT
    for body in bodies:
        # A body read when its picture was done may say "pending" of a token that has arrived
        # since: read it again at once, and pause only while it is still on its way.
        while (state := (body.get("metadata") or {}).get("timestamp")) != "stamped":
            if state not in ("pending", None) or time.monotonic() > deadline:
                raise BenchFailure(f"snapshot {body['id']}: timestamp {state!r}, not stamped")
            fresh = client.http.get(f"/api/v1/snapshots/{body['id']}").json()
            if (fresh.get("metadata") or {}).get("timestamp") == "pending":
                time.sleep(0.02)
            body = fresh


def _pass(
    server: SnapshotdServer, client: NativeClient, urls: list[str], side: Side, *, evidence: bool
) -> None:
    assert server.process is not None
    bodies: list[dict[str, Any]] = []
    before = proc.tree_cpu_by_kind(server.process.pid)
    series: Series = client.batch(urls, len(urls), evidence=evidence, finished=bodies)
    began = time.perf_counter()
    if evidence:
        _wait_for_stamps(client, bodies)
    waited = time.perf_counter() - began
    side.wall += (series.wall or 0.0) + waited
    side.stamp_wait += waited
    side.shots += len(urls)
    after = proc.tree_cpu_by_kind(server.process.pid)
    for kind, seconds in after.items():
        side.cpu[kind] += seconds - before.get(kind, 0.0)
    for body in bodies:
        timings = body["metadata"].get("timings_ms", {}).get("evidence") or {}
        for part, ms in timings.items():
            side.part_ms[part].append(float(ms))
        for artifact in body["artifacts"]:
            side.part_bytes[artifact["role"]].append(int(artifact["size"]))


def _measure(
    server: SnapshotdServer, client: NativeClient, subject: Subject, urls: list[str]
) -> None:
    client.batch(urls[: CONCURRENCY * 2], CONCURRENCY * 2, evidence=True)  # warm up
    first, second = urls[: len(urls) // 2], urls[len(urls) // 2 :]
    _pass(server, client, first, subject.off, evidence=False)
    _pass(server, client, first, subject.on, evidence=True)
    _pass(server, client, second, subject.on, evidence=True)
    _pass(server, client, second, subject.off, evidence=False)


def run(quick: bool, say: Callable[[str], None]) -> EvidenceResult:
    page_shots = 40 if quick else 80
    subjects = []
    with (
        LocalTsa("snapshotd bench TSA") as tsa,
        PageServer(build_page()) as page,
        SnapshotdServer(
            concurrency=CONCURRENCY,
            env={"SNAPSHOTD_TSA_URLS": tsa.url, "SNAPSHOTD_TSA_CA_FILE": str(tsa.ca)},
        ) as server,
        NativeClient(server.url, server.token) as client,
    ):
        try:
            say(f"evidence: {page_shots} bench-page snapshots off, on, on, off; TSA {tsa.url}")
            subject = Subject("bench page", page_shots)
            urls = [f"{page.url}?evidence={i}" for i in range(page_shots)]
            _measure(server, client, subject, urls)
            subjects.append(subject)
            root = doc_root()
            if root is None:
                say("evidence: python3-doc is not installed (make bench installs it); no corpus")
            else:
                with StaticServer(root) as static:
                    pages = pick_pages(root)
                    say(f"evidence: {len(pages)} python-doc pages off, on, on, off")
                    subject = Subject("python-doc corpus", len(pages))
                    _measure(server, client, subject, [static.url + name for name in pages])
                    subjects.append(subject)
        except BenchFailure as error:
            raise BenchFailure(f"evidence: {error}\nserve log:\n{server.log_tail()}") from error
        return EvidenceResult(subjects, tsa.requests)


def _median(values: list[float] | list[int]) -> float:
    return statistics.median(values) if values else 0.0


def describe(result: EvidenceResult) -> str:
    lines = [
        f"evidence: snapshotd serve at c={CONCURRENCY}, 1280x800 PNG; evidence on = DOM HTML, "
        "HAR, certificate chain + DNS, WACZ, signed manifest,",
        f"  and an RFC 3161 token from a local openssl TSA ({result.tsa_requests} requests); "
        "a pass with evidence ends when its last token is stored.",
    ]
    for subject in result.subjects:
        side = subject.on
        parts = ", ".join(
            f"{part} {_median(values):.0f} ms" for part, values in sorted(side.part_ms.items())
        )
        sizes = ", ".join(
            f"{role} {_median(values) / 1024:.0f} KiB"
            for role, values in sorted(side.part_bytes.items())
        )
        lines.append(f"  {subject.name}: engine time per part, median: {parts or 'not recorded'}")
        lines.append(f"  {subject.name}: stored per capture, median: {sizes}")
        lines.append(
            f"  {subject.name}: waiting for the last tokens after the last picture: "
            f"{side.stamp_wait:.2f} s of {side.wall:.1f} s"
        )
        for name, each in (("on", subject.on), ("off", subject.off)):
            spent = sorted(each.cpu.items(), key=lambda item: -item[1])
            split = ", ".join(f"{k} {v * 1000 / each.shots:.0f}" for k, v in spent if v > 0)
            lines.append(f"  {subject.name}: CPU ms per capture, evidence {name}: {split}")
    return "\n".join(lines)


def rows(result: EvidenceResult) -> list[Row]:
    table = []
    for subject in result.subjects:
        on, off = subject.on.rate, subject.off.rate
        ratio = on / off if off else 0.0
        table.append(
            Row(
                f"evidence: {subject.name}, all evidence vs none: shots/s (n={subject.on.shots})",
                f"{on:.2f}",
                f"{off:.2f}",
                f"{ratio:.2f}x",
                f">= {TARGET:.2f}x",
                "yes" if ratio >= TARGET else "NO",
            )
        )
    return table
