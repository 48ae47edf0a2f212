"""The database tables. Every row that belongs to a customer carries `org_id`."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def new_id(prefix: str) -> str:
    """A time-ordered, unguessable id: 48 bits of milliseconds then 80 random bits, base32."""
    value = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC, so SQLite and PostgreSQL compare the same way."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("org"))
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    webhook_secret: Mapped[str] = mapped_column(String(100))
    signing_key: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Per-organization overrides of the instance settings: {"page": 90} and {"native": "50/60"}.
    retention_days: Mapped[dict[str, Any]] = mapped_column(default=dict)
    rate_limits: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Seconds a capture is reused for an identical request (None: the instance's setting).
    cache_ttl: Mapped[int | None] = mapped_column(default=None)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("org_id", "email"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("usr"))
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    organization: Mapped[Organization] = relationship(lazy="joined")


class AccountGroup(Base):
    """ThousandEyes' account group (`aid`): a context inside an organization. Every organization
    has a default one that all its users belong to."""

    __tablename__ = "account_groups"
    __table_args__ = (UniqueConstraint("org_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Membership(Base):
    __tablename__ = "memberships"

    account_group_id: Mapped[int] = mapped_column(
        ForeignKey("account_groups.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("tok"))
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)

    user: Mapped[User] = relationship(lazy="joined")


# A capture whose cache key another capture of its organization already holds while running is
# refused by the database: how identical requests in any process coalesce into one capture.
IN_FLIGHT = text("status IN ('queued', 'working') AND cache_key IS NOT NULL")


class Snapshot(Base):
    __tablename__ = "snapshots"
    __table_args__ = (
        UniqueConstraint("org_id", "idempotency_key"),
        Index("ix_snapshots_org_created", "org_id", "id"),
        Index("ix_snapshots_cache", "org_id", "cache_key"),
        Index(
            "ux_snapshots_cache_in_flight",
            "org_id",
            "cache_key",
            unique=True,
            sqlite_where=IN_FLIGHT,
            postgresql_where=IN_FLIGHT,
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("snp"))
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))
    surface: Mapped[str] = mapped_column(String(20), default="native")
    status: Mapped[str] = mapped_column(String(20), default="queued")
    status_message: Mapped[str] = mapped_column(Text, default="")
    url: Mapped[str] = mapped_column(Text, default="")
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    job_id: Mapped[str | None] = mapped_column(String(40), default=None)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), default=None)
    callback_url: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    archived_at: Mapped[datetime | None] = mapped_column(default=None)
    archived_by: Mapped[str | None] = mapped_column(String(320), default=None)
    archived_reason: Mapped[str | None] = mapped_column(Text, default=None)
    legal_hold: Mapped[bool] = mapped_column(Boolean, default=False)
    hold_reason: Mapped[str | None] = mapped_column(Text, default=None)
    held_by: Mapped[str | None] = mapped_column(String(320), default=None)
    held_at: Mapped[datetime | None] = mapped_column(default=None)
    # Clickwrap: the location a capture or upload belongs to, and how it came (triggered,
    # automated, customer_provided).
    location_id: Mapped[str | None] = mapped_column(
        ForeignKey("locations.id", ondelete="SET NULL"), default=None, index=True
    )
    source: Mapped[str | None] = mapped_column(String(20), default=None)
    # The capture cache's key (services/capture_cache.py): set on captures that may be reused.
    cache_key: Mapped[str | None] = mapped_column(String(64), default=None)

    artifacts: Mapped[list[Artifact]] = relationship(
        back_populates="snapshot", cascade="all, delete-orphan", order_by="Artifact.id"
    )


class Artifact(Base):
    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("snapshot_id", "role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    snapshot_id: Mapped[str] = mapped_column(ForeignKey("snapshots.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(20))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(100))
    width: Mapped[int | None] = mapped_column(default=None)
    height: Mapped[int | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    snapshot: Mapped[Snapshot] = relationship(back_populates="artifacts")


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_claim", "state", "run_after"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("job"))
    org_id: Mapped[str | None] = mapped_column(String(40), default=None, index=True)
    kind: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # A job only the workers of one agent (host) may run, such as a synthetic test round.
    agent_id: Mapped[int | None] = mapped_column(default=None)
    state: Mapped[str] = mapped_column(String(20), default="queued")
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=3)
    lease_owner: Mapped[str | None] = mapped_column(String(200), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    run_after: Mapped[datetime] = mapped_column(default=utcnow)
    progress: Mapped[int] = mapped_column(default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class RenderKey(Base):
    """A key that signs render links (`/render/{id}/...`) for its organization. HMAC needs the
    secret itself to verify a signature, so it is kept, and never shown after creation."""

    __tablename__ = "render_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("rk"))
    org_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200), default="")
    secret: Mapped[str] = mapped_column(String(100))
    # "count/seconds" (rules.Limit); None: the instance's SNAPSHOTD_RENDER_KEY_RATE_LIMIT.
    rate_limit: Mapped[str | None] = mapped_column(String(40), default=None)
    created_by: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Share(Base):
    """A link that shows one snapshot without an API token. The id is the secret."""

    __tablename__ = "shares"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    snapshot_id: Mapped[str] = mapped_column(
        ForeignKey("snapshots.id", ondelete="CASCADE"), index=True
    )
    public: Mapped[bool] = mapped_column(Boolean, default=True)
    # What the link offers beside the picture: the evidence bundle, and the archived page to browse.
    evidence: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    replay: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_by: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class RateEvent(Base):
    """One counted action (a snapshot created) in a sliding-window limit."""

    __tablename__ = "rate_events"
    __table_args__ = (Index("ix_rate_events_key", "org_id", "bucket", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(String(40))
    bucket: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime] = mapped_column()


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_org", "org_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("aud"))
    org_id: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(40))
    target_type: Mapped[str] = mapped_column(String(40))
    target_id: Mapped[str] = mapped_column(String(80))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class Metric(Base):
    """A named measurement stream of an organization (Librato's metric). Names are matched
    case-insensitively through `key`."""

    __tablename__ = "metrics"
    __table_args__ = (UniqueConstraint("org_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(20), default="gauge")
    display_name: Mapped[str | None] = mapped_column(String(255), default=None)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    period: Mapped[int | None] = mapped_column(default=None)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # A composite metric (type "composite") has no series of its own: it is this expression.
    composite: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MetricSeries(Base):
    """One tag set of a metric (a legacy `source` is the tag `source`)."""

    __tablename__ = "metric_series"
    __table_args__ = (UniqueConstraint("metric_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    metric_id: Mapped[int] = mapped_column(ForeignKey("metrics.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Measurement(Base):
    """The samples of one series in one second, merged: a plain value is count 1 with
    sum = min = max = value, and a second sample in the same second adds to the row. Roll-ups over
    any resolution are then sums, minimums and maximums of these columns. On SQLite the table is
    clustered by (series, time), so a time-range read is one sequential scan."""

    __tablename__ = "measurements"
    __table_args__ = {"sqlite_with_rowid": False}

    series_id: Mapped[int] = mapped_column(
        ForeignKey("metric_series.id", ondelete="CASCADE"), primary_key=True
    )
    time: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    sum: Mapped[float] = mapped_column(Float)
    min: Mapped[float] = mapped_column(Float)
    max: Mapped[float] = mapped_column(Float)


class MetricRollup(Base):
    """The measurements of one series in one bucket of a coarser resolution (60, 300, 900 or
    3600 seconds), kept as the same four columns so that a bucket is exactly the merge of its
    seconds. `time` is the bucket's start, `time - time % resolution`. Ingest adds to these rows
    in the transaction that stores the seconds; reads use them for every whole bucket of a
    window. On SQLite the table is clustered by its key; on PostgreSQL the key's index carries
    the four columns, so a series' buckets come from index-only scans, in order, however ingest
    scattered the heap rows (once vacuum has marked their pages all-visible)."""

    __tablename__ = "metric_rollups"
    __table_args__ = (
        PrimaryKeyConstraint(
            "series_id", "resolution", "time", postgresql_include=["count", "sum", "min", "max"]
        ),
        {"sqlite_with_rowid": False},
    )

    series_id: Mapped[int] = mapped_column(
        ForeignKey("metric_series.id", ondelete="CASCADE"), primary_key=True
    )
    resolution: Mapped[int] = mapped_column(Integer, primary_key=True)
    time: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
    sum: Mapped[float] = mapped_column(Float)
    min: Mapped[float] = mapped_column(Float)
    max: Mapped[float] = mapped_column(Float)


class Space(Base):
    __tablename__ = "spaces"
    __table_args__ = (UniqueConstraint("org_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Chart(Base):
    """A chart in a space; `definition` holds streams and display options as validated JSON."""

    __tablename__ = "charts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(20), default="line")
    definition: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AnnotationStream(Base):
    """A named timeline of annotation events (deploys, incidents); `key` is the lower-cased name."""

    __tablename__ = "annotation_streams"
    __table_args__ = (UniqueConstraint("org_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AnnotationEvent(Base):
    """One event of an annotation stream: a moment (or a span, with `end_time`) in Unix seconds."""

    __tablename__ = "annotation_events"
    __table_args__ = (Index("ix_annotation_events_stream_start", "stream_id", "start_time"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    stream_id: Mapped[int] = mapped_column(ForeignKey("annotation_streams.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text, default=None)
    source: Mapped[str | None] = mapped_column(String(255), default=None)
    start_time: Mapped[int] = mapped_column(BigInteger)
    end_time: Mapped[int | None] = mapped_column(BigInteger, default=None)
    links: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Agent(Base):
    """A worker host that runs synthetic test rounds; every worker process on it shares the row."""

    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    location: Mapped[str] = mapped_column(String(255), default="")
    country_id: Mapped[str] = mapped_column(String(2), default="")
    ip_addresses: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class SyntheticTest(Base):
    """A test that runs every `interval` seconds on each of its agents, or a frozen copy of one
    made by a snapshot (`saved_event`, with the source and the window of rounds it holds)."""

    __tablename__ = "synthetic_tests"
    __table_args__ = (Index("ix_synthetic_tests_org", "org_id", "account_group_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    account_group_id: Mapped[int] = mapped_column(
        ForeignKey("account_groups.id", ondelete="CASCADE")
    )
    type: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(255), default="")
    url: Mapped[str] = mapped_column(Text)
    interval: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    description: Mapped[str] = mapped_column(Text, default="")
    agent_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    modified_by: Mapped[str] = mapped_column(String(320), default="")
    modified_at: Mapped[datetime] = mapped_column(default=utcnow)
    saved_event: Mapped[bool] = mapped_column(Boolean, default=False)
    # A saved test lives as long as the snapshot that froze it.
    snapshot_id: Mapped[str | None] = mapped_column(
        ForeignKey("snapshots.id", ondelete="CASCADE"), default=None
    )
    source_test_id: Mapped[int | None] = mapped_column(default=None)
    start_round: Mapped[int | None] = mapped_column(BigInteger, default=None)
    end_round: Mapped[int | None] = mapped_column(BigInteger, default=None)


class ProbeRound(Base):
    """One agent's run of a test in one round (epoch seconds at the round's start). The unique
    key is what makes a round run once however many workers schedule it."""

    __tablename__ = "test_rounds"
    __table_args__ = (UniqueConstraint("test_id", "round_id", "agent_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    test_id: Mapped[int] = mapped_column(ForeignKey("synthetic_tests.id", ondelete="CASCADE"))
    round_id: Mapped[int] = mapped_column(BigInteger)
    agent_id: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20), default="queued")
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Location(Base):
    """A page (or a mobile app screen) whose look is captured as evidence: Clickwrap's snapshot
    location. Web locations are captured by Chromium; mobile ones receive uploads."""

    __tablename__ = "locations"
    __table_args__ = (UniqueConstraint("org_id", "key"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("loc"))
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    location_type: Mapped[str] = mapped_column(String(20), default="web")
    capture_url: Mapped[str | None] = mapped_column(Text, default=None)
    platform: Mapped[str] = mapped_column(String(20), default="desktop")
    frequency: Mapped[str] = mapped_column(String(20), default="never")
    application_id: Mapped[str | None] = mapped_column(String(255), default=None)
    application_name: Mapped[str | None] = mapped_column(String(255), default=None)
    mobile_os: Mapped[str | None] = mapped_column(String(20), default=None)
    # snapshotd's own capture settings: selector, width, height, full_page.
    capture: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20), default="draft")
    published_at: Mapped[datetime | None] = mapped_column(default=None)
    published_by: Mapped[str | None] = mapped_column(String(320), default=None)
    archived_reason: Mapped[str | None] = mapped_column(Text, default=None)
    capture_attempts: Mapped[int] = mapped_column(default=0)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    next_capture_at: Mapped[datetime | None] = mapped_column(default=None)
    # Change detection: a capture differing from the previous one by more than this share of
    # pixels is `changed`, and `webhook_url` (if any) is told.
    change_threshold: Mapped[float] = mapped_column(Float, default=0.5)
    webhook_url: Mapped[str | None] = mapped_column(Text, default=None)
    created_by: Mapped[str] = mapped_column(String(320), default="")
    updated_by: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConsoleSession(Base):
    """A signed-in web console visit. The id is the SHA-256 of the secret in the visitor's cookie;
    the session lives no longer than `expires_at` nor the API token it was opened with."""

    __tablename__ = "console_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    token_id: Mapped[str] = mapped_column(
        ForeignKey("api_tokens.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
