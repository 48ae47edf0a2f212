"""Spaces and their charts: create, read, update, delete, with each chart's streams validated.

Snapshots of a chart are `chart_snapshots.py`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from snapshotd.engines.chart_semantics import parse_thresholds, parse_transform
from snapshotd.engines.charts import CHART_TYPES
from snapshotd.errors import BadRequest, NotFound, Unprocessable
from snapshotd.services import audit
from snapshotd.services.composite_charts import DOWNSAMPLE_FUNCTIONS
from snapshotd.services.composite_language import MAX_LENGTH
from snapshotd.services.composites import compile_expression
from snapshotd.services.samples import TAG_NAME, check_name, number
from snapshotd.store.db import Database
from snapshotd.store.models import Chart, Space, utcnow

GROUP_FUNCTIONS = ("average", "sum", "min", "max", "breakout")
SUMMARY_FUNCTIONS = ("average", "sum", "min", "max", "count", "derivative")
_COLOR = re.compile(r"^#[0-9A-Fa-f]{6}$")
_TEXT_FIELDS = ("name", "units_short", "units_long", "transform_function", "downsample_function")
_CHART_OPTIONS = ("min", "max", "label", "related_space", "use_log_yaxis")
MAX_ANNOTATION_STREAMS = 20


# -- validation -----------------------------------------------------------------------------------


def _text(value: Any, where: str, *, required: bool = False, limit: int = 255) -> str | None:
    if value is None or value == "":
        if required:
            raise BadRequest("is required", field=where)
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise BadRequest(f"must be text of at most {limit} characters", field=where)
    return value


def choice(value: Any, choices: tuple[str, ...], default: str, where: str) -> str:
    if value is None or value == "":
        return default
    if value not in choices:
        raise BadRequest(f"must be one of {', '.join(choices)}", field=where)
    return str(value)


def clean_stream(raw: Any, where: str, stream_id: int) -> dict[str, Any]:
    """One stream as stored: a metric with a source or tags, or a composite expression."""
    if not isinstance(raw, dict):
        raise BadRequest("must be an object", field=where)
    summary = choice(
        raw.get("summary_function"), SUMMARY_FUNCTIONS, "average", f"{where}.summary_function"
    )
    stream: dict[str, Any]
    if raw.get("composite"):
        stream = _composite_stream(raw, where, stream_id)
        stream["summary_function"] = summary
    else:
        stream = {
            "id": stream_id,
            "metric": check_name(raw.get("metric"), f"{where}.metric"),
            "type": "gauge",
            "group_function": choice(
                raw.get("group_function"), GROUP_FUNCTIONS, "average", f"{where}.group_function"
            ),
            "summary_function": summary,
        }
        if raw.get("tags") is not None:
            stream["tags"] = _stream_tags(raw["tags"], f"{where}.tags")
        else:
            stream["source"] = _text(raw.get("source"), f"{where}.source") or "*"
    for key in _TEXT_FIELDS:
        if (value := _text(raw.get(key), f"{where}.{key}")) is not None:
            stream[key] = value
    if "transform_function" in stream:
        parse_transform(stream["transform_function"], f"{where}.transform_function")
    if raw.get("color") is not None:
        if not isinstance(raw["color"], str) or not _COLOR.match(raw["color"]):
            raise BadRequest("must be #RRGGBB", field=f"{where}.color")
        stream["color"] = raw["color"]
    for key in ("min", "max", "period"):
        if raw.get(key) is not None:
            stream[key] = number(raw[key], f"{where}.{key}")
    if raw.get("split_axis") is not None:
        stream["split_axis"] = bool(raw["split_axis"])
    return stream


def _composite_stream(raw: Mapping[str, Any], where: str, stream_id: int) -> dict[str, Any]:
    """A composite stream: its expression, checked now so a chart never holds one that cannot
    be drawn. Librato's composite streams take no metric, source, tags or group function."""
    expression = _text(raw["composite"], f"{where}.composite", limit=MAX_LENGTH)
    try:
        compile_expression(expression)
    except BadRequest as error:
        raise BadRequest(error.detail, field=f"{where}.composite") from None
    return {
        "id": stream_id,
        "composite": expression,
        "type": "composite",
        "downsample_function": choice(
            raw.get("downsample_function"),
            DOWNSAMPLE_FUNCTIONS,
            "average",
            f"{where}.downsample_function",
        ),
    }


def _stream_tags(raw: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise BadRequest("must be a list of {name, values}", field=where)
    tags = []
    for tag in raw:
        if not isinstance(tag, dict) or not TAG_NAME.match(str(tag.get("name", ""))):
            raise BadRequest("each tag needs a valid name", field=where)
        values = tag.get("values") or []
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise BadRequest("values must be a list of strings", field=where)
        clean = {"name": tag["name"].lower(), "values": [v.lower() for v in values]}
        for flag in ("grouped", "dynamic"):
            if tag.get(flag) is not None:
                clean[flag] = bool(tag[flag])
        tags.append(clean)
    return tags


def clean_chart(raw: Mapping[str, Any], existing: Chart | None = None) -> dict[str, Any]:
    """Name, type and definition from a create (all fields) or an update (what is given)."""
    before = existing.definition if existing else {}
    name = _text(raw.get("name"), "name", required=existing is None)
    chart_type = choice(raw.get("type"), CHART_TYPES, existing.type if existing else "line", "type")
    definition = dict(before)
    if "streams" in raw or existing is None:
        streams = raw.get("streams") or []
        if not isinstance(streams, list):
            raise BadRequest("must be a list", field="streams")
        # A stream keeps its id across updates when the client sends it back.
        known = {s["id"] for s in before.get("streams", [])}
        next_id = max(known, default=0) + 1
        cleaned: list[dict[str, Any]] = []
        for index, stream in enumerate(streams):
            given = stream.get("id") if isinstance(stream, dict) else None
            if isinstance(given, int) and given in known:
                known.discard(given)
                sid = given
            else:
                sid, next_id = next_id, next_id + 1
            cleaned.append(clean_stream(stream, f"streams.{index}", sid))
        definition["streams"] = cleaned
    for key in _CHART_OPTIONS:
        if key in raw:
            definition[key] = raw[key]
    for key in ("min", "max"):
        if definition.get(key) is not None:
            definition[key] = number(definition[key], key)
    if "use_last_value" in raw:
        definition["use_last_value"] = bool(raw["use_last_value"])
    if "thresholds" in raw:
        thresholds = parse_thresholds(raw["thresholds"])
        definition["thresholds"] = [t.as_dict() for t in thresholds] if thresholds else None
    if "annotations" in raw:
        definition["annotations"] = annotation_streams(raw["annotations"], "annotations")
    return {"name": name or (existing.name if existing else ""), "type": chart_type, **definition}


def annotation_streams(raw: Any, where: str) -> list[str]:
    """The annotation streams a chart draws: names, or patterns with `*`."""
    if raw is None:
        return []
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or len(raw) > MAX_ANNOTATION_STREAMS:
        raise BadRequest(
            f"must be a list of at most {MAX_ANNOTATION_STREAMS} stream names", field=where
        )
    names = []
    for index, name in enumerate(raw):
        if isinstance(name, dict):  # Librato's own object shape: {"name": …}
            name = name.get("name")
        if not isinstance(name, str) or not _STREAM_PATTERN.match(name):
            raise BadRequest(
                "must be an annotation stream name or a * pattern", field=f"{where}.{index}"
            )
        names.append(name)
    return names


_STREAM_PATTERN = re.compile(r"^[A-Za-z0-9.:\-_*]{1,255}$")


# -- spaces and charts ----------------------------------------------------------------------------


class Spaces:
    def __init__(self, db: Database) -> None:
        self.db = db

    def find(
        self, org_id: str, *, name: str = "", offset: int = 0, length: int = 100, desc: bool = False
    ) -> tuple[list[Space], int, int]:
        scope = Space.org_id == org_id
        query = select(Space).where(scope)
        if name:
            query = query.where(func.lower(Space.name).contains(name.lower(), autoescape=True))
        order = Space.name.desc() if desc else Space.name
        with self.db.session() as session:
            total = session.scalar(select(func.count()).where(scope)) or 0
            found = session.scalar(select(func.count()).select_from(query.subquery())) or 0
            items = list(
                session.scalars(query.order_by(order, Space.id).offset(offset).limit(length))
            )
        return items, found, total

    def create(self, org_id: str, name: Any, *, actor: str) -> Space:
        clean = _text(name, "name", required=True)
        try:
            with self.db.session() as session:
                space = Space(org_id=org_id, name=clean)
                session.add(space)
                session.flush()
                audit.record(session, org_id, actor, "created", "space", str(space.id))
        except IntegrityError:
            raise Unprocessable(f"a space named {clean!r} already exists", field="name") from None
        return space

    def get(self, org_id: str, space_id: int) -> tuple[Space, list[int]]:
        with self.db.session() as session:
            space = _space(session, org_id, space_id)
            charts = session.scalars(
                select(Chart.id).where(Chart.space_id == space.id).order_by(Chart.id)
            )
            return space, list(charts)

    def rename(self, org_id: str, space_id: int, name: Any, *, actor: str) -> Space:
        clean = _text(name, "name", required=True)
        try:
            with self.db.session() as session:
                space = _space(session, org_id, space_id)
                space.name = clean or space.name
                audit.record(session, org_id, actor, "updated", "space", str(space_id))
        except IntegrityError:
            raise Unprocessable(f"a space named {clean!r} already exists", field="name") from None
        return space

    def delete(self, org_id: str, space_id: int, *, actor: str) -> None:
        with self.db.session() as session:
            session.delete(_space(session, org_id, space_id))
            audit.record(session, org_id, actor, "deleted", "space", str(space_id))

    # -- charts -------------------------------------------------------------------------------

    def charts(self, org_id: str, space_id: int) -> list[Chart]:
        with self.db.session() as session:
            space = _space(session, org_id, space_id)
            return list(
                session.scalars(select(Chart).where(Chart.space_id == space.id).order_by(Chart.id))
            )

    def chart(self, org_id: str, space_id: int, chart_id: int) -> Chart:
        with self.db.session() as session:
            return find_chart(session, org_id, chart_id, space_id)

    def create_chart(
        self, org_id: str, space_id: int, raw: Mapping[str, Any], *, actor: str
    ) -> Chart:
        fields = clean_chart(raw)
        with self.db.session() as session:
            space = _space(session, org_id, space_id)
            name, chart_type = fields.pop("name"), fields.pop("type")
            chart = Chart(org_id=org_id, space_id=space.id, name=name, type=chart_type)
            chart.definition = fields
            session.add(chart)
            session.flush()
            audit.record(session, org_id, actor, "created", "chart", str(chart.id))
        return chart

    def update_chart(
        self, org_id: str, space_id: int, chart_id: int, raw: Mapping[str, Any], *, actor: str
    ) -> Chart:
        with self.db.session() as session:
            chart = find_chart(session, org_id, chart_id, space_id)
            fields = clean_chart(raw, chart)
            chart.name, chart.type = fields.pop("name"), fields.pop("type")
            chart.definition, chart.updated_at = fields, utcnow()
            audit.record(session, org_id, actor, "updated", "chart", str(chart_id))
        return chart

    def delete_chart(self, org_id: str, space_id: int, chart_id: int, *, actor: str) -> None:
        with self.db.session() as session:
            session.delete(find_chart(session, org_id, chart_id, space_id))
            audit.record(session, org_id, actor, "deleted", "chart", str(chart_id))


def _space(session: Session, org_id: str, space_id: int) -> Space:
    space = session.get(Space, space_id)
    if space is None or space.org_id != org_id:
        raise NotFound(f"no space {space_id}")
    return space


def find_chart(session: Session, org_id: str, chart_id: int, space_id: int | None = None) -> Chart:
    chart = session.get(Chart, chart_id)
    if chart is None or chart.org_id != org_id or space_id not in (None, chart.space_id):
        raise NotFound(f"no chart {chart_id}")
    return chart
