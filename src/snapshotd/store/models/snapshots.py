"""Snapshots and what makes, stores and shows them: artifacts, jobs, render keys, share links."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from snapshotd.store.models.base import Base, new_id, utcnow

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
