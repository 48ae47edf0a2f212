"""Prometheus metrics: one registry per process, handed to the app and the workers."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from snapshotd.rules import host_port
from snapshotd.store.outages import as_outage


class _QueueCollector(Collector):
    def __init__(self, counts: Callable[[], dict[str, int]]) -> None:
        self.counts = counts

    def collect(self) -> Iterable[Metric]:
        # Scraped during a database outage, the other metrics still answer; the queue's are
        # left out and snapshotd_database_up says why.
        up = GaugeMetricFamily(
            "snapshotd_database_up", "1 when the job queue could be read from the database."
        )
        try:
            counts = self.counts()
        except Exception as error:
            if as_outage(error) is None:
                raise
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        depth = GaugeMetricFamily("snapshotd_queue_depth", "Jobs waiting to be claimed.")
        depth.add_metric([], counts.get("queued", 0))
        yield depth
        jobs = GaugeMetricFamily("snapshotd_jobs", "Jobs by state.", labels=["state"])
        for state, n in sorted(counts.items()):
            jobs.add_metric([state], n)
        yield jobs


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.capture_seconds = Histogram(
            "snapshotd_capture_seconds",
            "Time from claim to stored artifacts for one capture.",
            ["outcome"],
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
            registry=self.registry,
        )
        self.capture_cache = Counter(
            "snapshotd_capture_cache",
            "Capture requests on the caching routes, by whether the cache answered them.",
            ["result"],
            registry=self.registry,
        )
        self.browser_restarts = Counter(
            "snapshotd_browser_restarts",
            "Browsers relaunched after a crash, a hang or recycling.",
            registry=self.registry,
        )

    def watch_queue(self, counts: Callable[[], dict[str, int]]) -> None:
        self.registry.register(_QueueCollector(counts))

    def serve(self, address: str) -> None:
        """Serves this registry at http://HOST:PORT/metrics from a daemon thread, for processes
        without an API of their own (`snapshotd worker`). Raises OSError when the address cannot
        be bound."""
        host, port = host_port(address)
        start_http_server(port, host, registry=self.registry)
