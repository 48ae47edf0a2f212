"""What is watched, and from where: agents, synthetic tests and their rounds, Clickwrap
locations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from snapshotd.store.models.base import Base, new_id, utcnow


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
