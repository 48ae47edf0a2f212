"""Metrics: measurements in, series out over a time window at a resolution.

Samples (validated by `samples.py`) are stored per series and second (count, sum, min, max; a
plain value is count 1, and samples in the same second merge). The same transaction adds them to
the stored roll-ups (`rollups.py`: 1, 5, 15 and 60 min), and a read at a resolution that one of
those divides takes its whole buckets from there, so a month-long read costs a few thousand rows
a series rather than one a second; other resolutions are rolled up on read by one GROUP BY.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from snapshotd.errors import BadRequest, NotFound
from snapshotd.services import rollups
from snapshotd.services.rollups import merging_insert
from snapshotd.services.samples import (
    KEEP,
    METRIC_TYPES,
    MetricChanges,
    MetricProps,
    Point,
    Sample,
    TagFilter,
    Tags,
    check_name,
    tag_filter_matches,
    wildcard,
)
from snapshotd.store.db import Database, chunked, insert_or_merge, rowcount
from snapshotd.store.models import Measurement, Metric, MetricRollup, MetricSeries

MAX_POINTS_PER_READ = 100_000
# The stored columns each chart value needs; a mean is sum / count.
_PARTS = {"sum": ("sum",), "min": ("min",), "max": ("max",), "count": ("count",)}


@dataclass
class SeriesPoints:
    tags: dict[str, str]
    points: list[Point]


# -- storage --------------------------------------------------------------------------------------


class Metrics:
    def __init__(self, db: Database) -> None:
        self.db = db

    def submit(
        self, org_id: str, samples: Sequence[Sample], props: Mapping[str, MetricProps]
    ) -> int:
        """Stores samples; unknown metrics are created on the fly with their `props`."""
        if not samples:
            return 0
        with self.db.session() as session:
            names = {s.name.lower(): s.name for s in samples}
            metric_ids = self._metric_ids(session, org_id, names, props)
            wanted = {(metric_ids[s.name.lower()], s.tags) for s in samples}
            series_ids = self._series_ids(session, wanted)
            merged: dict[tuple[int, int], list[Any]] = {}
            for s in samples:
                key = (series_ids[(metric_ids[s.name.lower()], s.tags)], s.time)
                row = merged.get(key)
                if row is None:
                    merged[key] = [s.count, s.sum, s.min, s.max]
                else:
                    row[0], row[1] = row[0] + s.count, row[1] + s.sum
                    row[2], row[3] = min(row[2], s.min), max(row[3], s.max)
            # In key order, so concurrent submissions lock rows in one order and cannot deadlock.
            seconds = [(sid, when, *row) for (sid, when), row in sorted(merged.items())]
            rows = [
                {"series_id": sid, "time": when, "count": c, "sum": t, "min": lo, "max": hi}
                for sid, when, c, t, lo, hi in seconds
            ]
            session.execute(merging_insert(session, Measurement, ["series_id", "time"]), rows)
            rollups.add(session, seconds)
        return len(samples)

    def _metric_ids(
        self,
        session: Session,
        org_id: str,
        names: Mapping[str, str],
        props: Mapping[str, MetricProps],
    ) -> dict[str, int]:
        found = self._existing_metrics(session, org_id, names)
        missing = sorted(key for key in names if key not in found)
        if missing:
            rows = []
            for key in missing:
                p = props.get(key, MetricProps())
                rows.append(
                    {
                        "org_id": org_id,
                        "key": key,
                        "name": names[key],
                        "type": p.type,
                        "period": p.period,
                        "display_name": p.display_name,
                        "description": p.description,
                        "attributes": p.attributes,
                    }
                )
            _insert_ignoring_duplicates(session, Metric, rows, ["org_id", "key"])
            found.update(self._existing_metrics(session, org_id, missing))
        return found

    @staticmethod
    def _existing_metrics(session: Session, org_id: str, keys: Iterable[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for chunk in chunked(list(keys)):
            query = select(Metric.key, Metric.id).where(
                Metric.org_id == org_id, Metric.key.in_(chunk)
            )
            found.update({key: metric_id for key, metric_id in session.execute(query)})
        return found

    def _series_ids(
        self, session: Session, wanted: set[tuple[int, Tags]]
    ) -> dict[tuple[int, Tags], int]:
        keyed = {(metric_id, _series_key(tags)): (metric_id, tags) for metric_id, tags in wanted}
        found = self._existing_series(session, keyed)
        missing = sorted(k for k in keyed if keyed[k] not in found)
        if missing:
            rows = [
                {"metric_id": metric_id, "key": key, "tags": dict(keyed[(metric_id, key)][1])}
                for metric_id, key in missing
            ]
            _insert_ignoring_duplicates(session, MetricSeries, rows, ["metric_id", "key"])
            found.update(self._existing_series(session, {k: keyed[k] for k in missing}))
        return found

    @staticmethod
    def _existing_series(
        session: Session, keyed: Mapping[tuple[int, str], tuple[int, Tags]]
    ) -> dict[tuple[int, Tags], int]:
        found = {}
        metric_ids = {metric_id for metric_id, _key in keyed}
        for chunk in chunked(sorted({key for _metric, key in keyed})):
            query = select(MetricSeries.metric_id, MetricSeries.key, MetricSeries.id).where(
                MetricSeries.metric_id.in_(metric_ids), MetricSeries.key.in_(chunk)
            )
            for metric_id, key, series_id in session.execute(query):
                if (metric_id, key) in keyed:
                    found[keyed[(metric_id, key)]] = series_id
        return found

    # -- metric records -----------------------------------------------------------------------

    def get(self, org_id: str, name: str) -> Metric:
        check_name(name)
        with self.db.session() as session:
            return _metric(session, org_id, name)

    def find(
        self, org_id: str, *, name: str = "", offset: int = 0, length: int = 100, desc: bool = False
    ) -> tuple[list[Metric], int, int]:
        """A page of metrics by name; `name` is a case-insensitive substring. Returns the page,
        the number matching and the organization's total."""
        scope = Metric.org_id == org_id
        query = select(Metric).where(scope)
        if name:
            query = query.where(Metric.key.contains(name.lower(), autoescape=True))
        order = Metric.key.desc() if desc else Metric.key
        with self.db.session() as session:
            total = session.scalar(select(func.count()).where(scope)) or 0
            found = session.scalar(select(func.count()).select_from(query.subquery())) or 0
            items = list(session.scalars(query.order_by(order).offset(offset).limit(length)))
        return items, found, total

    def put(self, org_id: str, name: str, changes: MetricChanges) -> bool:
        """Updates a metric's properties, creating it when `type` is given; True if created."""
        check_name(name)
        try:
            return self._put(org_id, name, changes)
        except IntegrityError:
            return self._put(org_id, name, changes)  # created meanwhile by another request

    def _put(self, org_id: str, name: str, changes: MetricChanges) -> bool:
        with self.db.session() as session:
            metric = session.scalar(
                select(Metric).where(Metric.org_id == org_id, Metric.key == name.lower())
            )
            created = metric is None
            if metric is None:
                kind = changes.type
                if kind not in METRIC_TYPES:
                    raise BadRequest("must be gauge or counter to create a metric", field="type")
                metric = Metric(org_id=org_id, key=name.lower(), name=name, type=kind)
                session.add(metric)
            apply_changes(metric, changes)
        return created

    def put_many(self, org_id: str, names: Sequence[str], changes: MetricChanges) -> int:
        with self.db.session() as session:
            metrics = self._matching(session, org_id, names)
            for metric in metrics:
                apply_changes(metric, changes)
            return len(metrics)

    def delete(self, org_id: str, names: Sequence[str]) -> int:
        """Deletes metrics named (or matching `*` patterns) and their measurements."""
        with self.db.session() as session:
            metrics = self._matching(session, org_id, names)
            ids = [m.id for m in metrics]
            for chunk in chunked(ids):
                series = select(MetricSeries.id).where(MetricSeries.metric_id.in_(chunk))
                session.execute(delete(Measurement).where(Measurement.series_id.in_(series)))
                session.execute(delete(MetricRollup).where(MetricRollup.series_id.in_(series)))
                session.execute(delete(MetricSeries).where(MetricSeries.metric_id.in_(chunk)))
                session.execute(delete(Metric).where(Metric.id.in_(chunk)))
            return len(ids)

    @staticmethod
    def _matching(session: Session, org_id: str, names: Sequence[str]) -> list[Metric]:
        if not names:
            raise BadRequest("give at least one metric name", field="names")
        metrics = list(session.scalars(select(Metric).where(Metric.org_id == org_id)))
        patterns = [wildcard(n) for n in names]
        return [m for m in metrics if any(p.match(m.key) for p in patterns)]

    def prune(self, before: int) -> int:
        """Deletes measurements older than `before` (Unix seconds), series by series so each
        delete is a range of the primary key; returns how many went."""
        removed = 0
        with self.db.session() as session:
            series_ids = list(session.scalars(select(MetricSeries.id)))
        for chunk in chunked(series_ids):
            with self.db.session() as session:
                removed += rowcount(
                    session,
                    delete(Measurement).where(
                        Measurement.series_id.in_(chunk), Measurement.time < before
                    ),
                )
        return removed

    # -- reads --------------------------------------------------------------------------------

    def read(
        self,
        org_id: str,
        name: str,
        *,
        start: int,
        end: int,
        resolution: int,
        tags: TagFilter | None = None,
    ) -> tuple[Metric, list[SeriesPoints]]:
        """Each matching series rolled up into `resolution`-second buckets over [start, end]."""
        check_name(name)
        if end < start:
            raise BadRequest("must not be before start_time", field="end_time")
        if resolution < 1:
            raise BadRequest("must be at least 1 second", field="resolution")
        if (end - start) / resolution > MAX_POINTS_PER_READ:
            raise BadRequest(
                f"is too fine for this interval (at most {MAX_POINTS_PER_READ} points a series)",
                field="resolution",
            )
        with self.db.session() as session:
            metric, matching = _series_of(session, org_id, name, tags)
            points = rollups.read_points(session, list(matching), start, end, resolution)
        return metric, [SeriesPoints(matching[sid], points.get(sid, [])) for sid in matching]

    def read_values(
        self,
        org_id: str,
        name: str,
        *,
        start: int,
        end: int,
        resolution: int,
        tags: TagFilter | None = None,
        function: str = "average",
    ) -> list[tuple[dict[str, str], np.ndarray, np.ndarray]]:
        """For drawing: each matching series' (tags, times, values), a value being the bucket's
        average, sum, min, max or count. An unknown metric has no series."""
        parts = _PARTS.get(function, ("count", "sum"))
        with self.db.session() as session:
            try:
                _metric, matching = _series_of(session, org_id, name, tags)
            except NotFound:
                return []
            found = rollups.read_arrays(session, list(matching), start, end, resolution, parts)
        out = []
        for sid, series_tags in matching.items():
            if sid in found:
                times, columns = found[sid]
                values = columns[:, 1] / columns[:, 0] if len(parts) == 2 else columns[:, 0]
                out.append((series_tags, times, values))
        return out


def _series_of(
    session: Session, org_id: str, name: str, tags: TagFilter | None
) -> tuple[Metric, dict[int, dict[str, str]]]:
    metric = _metric(session, org_id, name)
    rows = session.execute(
        select(MetricSeries.id, MetricSeries.tags).where(MetricSeries.metric_id == metric.id)
    ).all()
    return metric, {sid: t for sid, t in rows if tag_filter_matches(t, tags or {})}


def _metric(session: Session, org_id: str, name: str) -> Metric:
    metric = session.scalar(
        select(Metric).where(Metric.org_id == org_id, Metric.key == name.lower())
    )
    if metric is None:
        raise NotFound(f"no metric named {name}")
    return metric


def apply_changes(metric: Metric, changes: MetricChanges) -> None:
    """Sets the properties `changes` names on `metric` (its type is never changed here)."""
    if changes.display_name is not KEEP:
        metric.display_name = changes.display_name
    if changes.description is not KEEP:
        metric.description = changes.description
    if changes.period is not KEEP:
        metric.period = changes.period
    if changes.attributes is not KEEP:
        metric.attributes = {**(metric.attributes or {}), **changes.attributes}


def _series_key(tags: Tags) -> str:
    canonical = json.dumps(tags, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _insert_ignoring_duplicates(
    session: Session, model: type[Any], rows: list[dict[str, Any]], unique: list[str]
) -> None:
    """Inserts rows, skipping any that another transaction created meanwhile."""
    for chunk in chunked(rows):
        statement = insert_or_merge(session, model).values(list(chunk))
        session.execute(statement.on_conflict_do_nothing(index_elements=unique))
