"""The Librato-compatible tables: metrics, their series, measurements and roll-ups, spaces and
charts, annotation streams and events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from snapshotd.store.models.base import Base, utcnow


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
