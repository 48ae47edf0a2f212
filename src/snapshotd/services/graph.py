"""The composition root: `build_services(settings)` makes the one object graph every front end
uses — the database, the blob store, the job queue and the services over them.

`create_app`, the worker and the CLI all call it; nothing else constructs a service. The HTTP
layer reads only the services (an import contract in pyproject.toml keeps it off the store), so
the `db`, `blobs` and `queue` fields are here for the services and the worker, not for routes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from snapshotd.config import Settings
from snapshotd.engines.egress import EgressPolicy
from snapshotd.services.accounts import Accounts
from snapshotd.services.agents import Agents
from snapshotd.services.annotations import Annotations
from snapshotd.services.audit import AuditLog
from snapshotd.services.browse import Browse
from snapshotd.services.capture_cache import CacheHits
from snapshotd.services.chart_snapshots import ChartSnapshots
from snapshotd.services.comparisons import Comparisons
from snapshotd.services.composites import Composites
from snapshotd.services.console_reads import ConsoleReads
from snapshotd.services.console_sessions import ConsoleSessions
from snapshotd.services.downloads import Downloads
from snapshotd.services.evidence import Evidence
from snapshotd.services.holds import Holds
from snapshotd.services.locations import Locations
from snapshotd.services.metrics import Metrics
from snapshotd.services.org_settings import OrgSettings
from snapshotd.services.principals import PrincipalCache
from snapshotd.services.ratelimit import TokenBuckets
from snapshotd.services.render_keys import RenderKeys
from snapshotd.services.runner import LocalRunner, SyncCapture
from snapshotd.services.shares import Shares
from snapshotd.services.snapshot_reads import SnapshotReads
from snapshotd.services.snapshots import Snapshots
from snapshotd.services.spaces import Spaces
from snapshotd.services.synthetic import Synthetic
from snapshotd.services.test_windows import TestWindows
from snapshotd.services.thumbnails import Thumbnails
from snapshotd.services.verification import Verifier
from snapshotd.store.blobs import BlobStore, make_blob_store
from snapshotd.store.db import Database
from snapshotd.store.queue import JobQueue
from snapshotd.telemetry import Telemetry

__all__ = ["BlobStore", "Database", "LocalRunner", "Services", "build_services"]


@dataclass
class Services:
    settings: Settings
    db: Database
    blobs: BlobStore
    queue: JobQueue
    telemetry: Telemetry
    accounts: Accounts
    agents: Agents
    audit: AuditLog
    downloads: Downloads
    holds: Holds
    org_settings: OrgSettings
    reads: SnapshotReads
    snapshots: Snapshots
    shares: Shares
    metrics: Metrics
    composites: Composites
    spaces: Spaces
    chart_snapshots: ChartSnapshots
    annotations: Annotations
    synthetic: Synthetic
    test_windows: TestWindows
    locations: Locations
    evidence: Evidence
    capture: SyncCapture
    render_keys: RenderKeys
    cache_hits: CacheHits
    token_requests: TokenBuckets
    misses: TokenBuckets
    # the web console's own reads and sessions
    console_sessions: ConsoleSessions
    console_reads: ConsoleReads
    browse: Browse
    thumbnails: Thumbnails
    comparisons: Comparisons
    verifier: Verifier
    principals: PrincipalCache = field(default_factory=PrincipalCache)

    def watch_queue(self) -> None:
        """Reports the queue's lengths in this process's metrics (once per process)."""
        self.telemetry.watch_queue(self.queue.counts)

    def readiness(self) -> dict[str, str]:
        """What `/readyz` reports: "ok" for each part that is ready, else why not."""
        checks = {"database": self.db.ping()}
        runner = self.capture.runner
        if runner is not None:
            checks["worker"] = "ok" if runner.ready.is_set() else "starting"
        return checks


def make_queue(settings: Settings, db: Database) -> JobQueue:
    return JobQueue(
        db,
        lease_seconds=settings.job_lease_seconds,
        max_attempts=settings.job_max_attempts,
        max_length=settings.queue_max_length,
    )


def build_services(
    settings: Settings,
    *,
    db: Database | None = None,
    blobs: BlobStore | None = None,
    telemetry: Telemetry | None = None,
    runner: LocalRunner | None = None,
) -> Services:
    """Every part not given is made from `settings`. `runner` is this process's own worker, when
    it has one: synchronous captures then run on it instead of waiting on the queue."""
    db = db or Database.from_url(settings.resolved_database_url)
    blobs = blobs or make_blob_store(settings)
    telemetry = telemetry or Telemetry()
    queue = make_queue(settings, db)
    snapshots = Snapshots(settings, db, queue, blobs)
    shares = Shares(settings, db)
    metrics = Metrics(db)
    locations = Locations(snapshots)
    annotations = Annotations(db)
    chart_snapshots = ChartSnapshots(settings, snapshots, metrics, annotations)
    return Services(
        settings=settings,
        db=db,
        blobs=blobs,
        queue=queue,
        telemetry=telemetry,
        accounts=Accounts(db),
        agents=Agents(db),
        audit=AuditLog(db),
        downloads=Downloads(db, blobs),
        holds=Holds(db),
        org_settings=OrgSettings(db),
        reads=SnapshotReads(db),
        snapshots=snapshots,
        shares=shares,
        metrics=metrics,
        composites=chart_snapshots.composites,
        spaces=Spaces(db),
        annotations=annotations,
        chart_snapshots=chart_snapshots,
        synthetic=Synthetic(db, queue, EgressPolicy(settings.egress_allow)),
        test_windows=TestWindows(snapshots, shares),
        locations=locations,
        evidence=Evidence(locations),
        capture=SyncCapture(settings, snapshots, runner, telemetry),
        render_keys=RenderKeys(settings, db),
        cache_hits=CacheHits(settings, db),
        token_requests=TokenBuckets(settings.token_requests_per_minute, policy="requests"),
        misses=TokenBuckets(settings.share_misses_per_minute, policy="misses"),
        console_sessions=ConsoleSessions(db),
        console_reads=ConsoleReads(db, chart_snapshots),
        browse=Browse(db),
        thumbnails=Thumbnails(db, blobs),
        comparisons=Comparisons(locations, blobs),
        verifier=Verifier(snapshots),
    )
