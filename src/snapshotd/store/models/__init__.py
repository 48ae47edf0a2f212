"""The database tables. Every row that belongs to a customer carries `org_id`.

- `base`: `Base`, the `UTCDateTime` column type, and the `new_id` and `utcnow` helpers.
- `accounts`: who may do what: organizations, users, account groups, memberships, API tokens,
  console sessions, audit events, rate-limit events.
- `snapshots`: snapshots, their artifacts, the jobs that make them, render keys, share links.
- `metrics`: the Librato-compatible tables: metrics, series, measurements, roll-ups, spaces,
  charts, annotation streams and events.
- `monitoring`: agents, synthetic tests and their rounds, Clickwrap locations.

Every module is imported here, so `Base.metadata` holds every table and relationships named by
string resolve."""

from snapshotd.store.models.accounts import (
    AccountGroup,
    ApiToken,
    AuditEvent,
    ConsoleSession,
    Membership,
    Organization,
    RateEvent,
    User,
)
from snapshotd.store.models.base import Base, UTCDateTime, new_id, utcnow
from snapshotd.store.models.metrics import (
    AnnotationEvent,
    AnnotationStream,
    Chart,
    Measurement,
    Metric,
    MetricRollup,
    MetricSeries,
    Space,
)
from snapshotd.store.models.monitoring import Agent, Location, ProbeRound, SyntheticTest
from snapshotd.store.models.snapshots import IN_FLIGHT, Artifact, Job, RenderKey, Share, Snapshot

__all__ = [
    "IN_FLIGHT",
    "AccountGroup",
    "Agent",
    "AnnotationEvent",
    "AnnotationStream",
    "ApiToken",
    "Artifact",
    "AuditEvent",
    "Base",
    "Chart",
    "ConsoleSession",
    "Job",
    "Location",
    "Measurement",
    "Membership",
    "Metric",
    "MetricRollup",
    "MetricSeries",
    "Organization",
    "ProbeRound",
    "RateEvent",
    "RenderKey",
    "Share",
    "Snapshot",
    "Space",
    "SyntheticTest",
    "UTCDateTime",
    "User",
    "new_id",
    "utcnow",
]
