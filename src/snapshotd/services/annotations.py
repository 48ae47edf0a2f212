"""Annotation streams and their events (deploys, incidents, batch runs), per organization.

A stream is made by the first event posted to its name. Events are moments in Unix seconds, or
spans when they carry an `end_time`; chart snapshots draw the ones in their window as markers.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from snapshotd.errors import BadRequest, NotFound, Unprocessable
from snapshotd.services import audit
from snapshotd.services.samples import MAX_WHOLE, NAME, epoch, wildcard
from snapshotd.store.db import Database
from snapshotd.store.models import AnnotationEvent, AnnotationStream

MAX_EVENTS_PER_READ = 1000
MAX_MARKERS = 200
MAX_LINKS = 20
_DESCRIPTION_LIMIT = 10_000
_HREF_LIMIT = 2048


@dataclass(frozen=True)
class Marker:
    start: int
    end: int | None
    title: str


def stream_name(name: Any, where: str = "name") -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise BadRequest(
            f"{name!r} is not a valid stream name: use 1-255 of A-Z a-z 0-9 . : - _", field=where
        )
    return name


def _text(raw: Mapping[str, Any], key: str, limit: int = 255) -> str | None:
    value = raw.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise BadRequest(f"must be text of at most {limit} characters", field=key)
    return value


def link(raw: Any, where: str) -> dict[str, str]:
    """`{"rel", "href", "label"?}`: `rel` names the link within its event; `href` is http(s)."""
    if not isinstance(raw, dict):
        raise BadRequest("must be an object with rel and href", field=where)
    rel, href, label = raw.get("rel"), raw.get("href"), raw.get("label")
    if not isinstance(rel, str) or not NAME.match(rel):
        raise BadRequest("must be 1-255 of A-Z a-z 0-9 . : - _", field=f"{where}.rel")
    if not isinstance(href, str) or len(href) > _HREF_LIMIT:
        raise BadRequest(
            f"must be a URL of at most {_HREF_LIMIT} characters", field=f"{where}.href"
        )
    parts = urlsplit(href)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadRequest("must be an http or https URL", field=f"{where}.href")
    out = {"rel": rel, "href": href}
    if label is not None and label != "":
        if not isinstance(label, str) or len(label) > 255:
            raise BadRequest("must be text of at most 255 characters", field=f"{where}.label")
        out["label"] = label
    return out


def links(raw: Any) -> list[dict[str, str]]:
    if raw is None or raw == "":
        return []
    if isinstance(raw, dict):  # form encoding: links[0][rel]=… arrives keyed by index
        raw = list(raw.values())
    if not isinstance(raw, list) or len(raw) > MAX_LINKS:
        raise BadRequest(f"must be a list of at most {MAX_LINKS} links", field="links")
    out = [link(item, f"links.{index}") for index, item in enumerate(raw)]
    rels = [item["rel"] for item in out]
    if len(set(rels)) != len(rels):
        raise BadRequest("each link's rel must be unique within the event", field="links")
    return out


class Annotations:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- streams ------------------------------------------------------------------------------

    def find(
        self, org_id: str, *, name: str = "", offset: int = 0, length: int = 100, desc: bool = False
    ) -> tuple[list[AnnotationStream], int, int]:
        scope = AnnotationStream.org_id == org_id
        query = select(AnnotationStream).where(scope)
        if name:
            query = query.where(AnnotationStream.key.contains(name.lower(), autoescape=True))
        order = AnnotationStream.key.desc() if desc else AnnotationStream.key
        with self.db.session() as session:
            total = session.scalar(select(func.count()).where(scope)) or 0
            found = session.scalar(select(func.count()).select_from(query.subquery())) or 0
            items = list(session.scalars(query.order_by(order).offset(offset).limit(length)))
        return items, found, total

    def stream(self, org_id: str, name: str) -> AnnotationStream:
        with self.db.session() as session:
            return _stream(session, org_id, name)

    def update_stream(
        self, org_id: str, name: str, raw: Mapping[str, Any], *, actor: str
    ) -> AnnotationStream:
        with self.db.session() as session:
            stream = _stream(session, org_id, name)
            if "display_name" in raw:
                stream.display_name = _text(raw, "display_name")
            audit.record(session, org_id, actor, "updated", "annotation_stream", stream.name)
            return stream

    def delete_stream(self, org_id: str, name: str, *, actor: str) -> None:
        with self.db.session() as session:
            stream = _stream(session, org_id, name)
            session.delete(stream)
            audit.record(session, org_id, actor, "deleted", "annotation_stream", stream.name)

    # -- events -------------------------------------------------------------------------------

    def events(
        self, org_id: str, name: str, *, start: int, end: int, sources: Sequence[str] = ()
    ) -> tuple[AnnotationStream, list[AnnotationEvent]]:
        """The stream's events that start in [start, end], in start order, optionally only those
        whose source matches one of `sources` (`*` wildcards)."""
        if end < start:
            raise BadRequest("must not be before start_time", field="end_time")
        patterns = [wildcard(s.lower()) for s in sources]
        with self.db.session() as session:
            stream = _stream(session, org_id, name)
            query = (
                select(AnnotationEvent)
                .where(
                    AnnotationEvent.stream_id == stream.id,
                    AnnotationEvent.start_time >= start,
                    AnnotationEvent.start_time <= end,
                )
                .order_by(AnnotationEvent.start_time, AnnotationEvent.id)
            )
            found = []
            for event in session.scalars(query):
                source = (event.source or "").lower()
                if patterns and not any(p.match(source) for p in patterns):
                    continue
                found.append(event)
                if len(found) == MAX_EVENTS_PER_READ:
                    break
            return stream, found

    def event(
        self, org_id: str, name: str, event_id: int
    ) -> tuple[AnnotationStream, AnnotationEvent]:
        with self.db.session() as session:
            stream = _stream(session, org_id, name)
            return stream, _event(session, stream, event_id)

    def create_event(
        self, org_id: str, name: str, raw: Mapping[str, Any], *, actor: str
    ) -> tuple[AnnotationStream, AnnotationEvent]:
        """A new event; its stream is made when it does not exist yet."""
        stream_name(name)
        now = time.time()
        title = _text(raw, "title")
        if title is None:
            raise BadRequest("is required", field="title")
        start = int(now) if raw.get("start_time") in (None, "") else _time(raw, "start_time", now)
        end = None if raw.get("end_time") in (None, "") else _time(raw, "end_time", now)
        _check_span(start, end)
        fields = {
            "title": title,
            "description": _text(raw, "description", _DESCRIPTION_LIMIT),
            "source": _source(raw),
            "start_time": start,
            "end_time": end,
            "links": links(raw.get("links")),
        }
        for attempt in range(2):  # a concurrent first post may create the stream in between
            try:
                with self.db.session() as session:
                    stream = _stream_or_new(session, org_id, name)
                    event = AnnotationEvent(stream_id=stream.id, **fields)
                    session.add(event)
                    session.flush()
                    audit.record(
                        session, org_id, actor, "created", "annotation_event", str(event.id)
                    )
                    return stream, event
            except IntegrityError:
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def update_event(
        self, org_id: str, name: str, event_id: int, raw: Mapping[str, Any], *, actor: str
    ) -> AnnotationEvent:
        """Librato lets `title`, `description`, `end_time` and `links` change."""
        now = time.time()
        with self.db.session() as session:
            stream = _stream(session, org_id, name)
            event = _event(session, stream, event_id)
            if "title" in raw:
                title = _text(raw, "title")
                if title is None:
                    raise BadRequest("must not be empty", field="title")
                event.title = title
            if "description" in raw:
                event.description = _text(raw, "description", _DESCRIPTION_LIMIT)
            if "end_time" in raw:
                event.end_time = (
                    None if raw["end_time"] in (None, "") else _time(raw, "end_time", now)
                )
                _check_span(event.start_time, event.end_time)
            if "links" in raw:
                event.links = links(raw["links"])
            audit.record(session, org_id, actor, "updated", "annotation_event", str(event_id))
            return event

    def delete_event(self, org_id: str, name: str, event_id: int, *, actor: str) -> None:
        with self.db.session() as session:
            stream = _stream(session, org_id, name)
            session.delete(_event(session, stream, event_id))
            audit.record(session, org_id, actor, "deleted", "annotation_event", str(event_id))

    def add_link(
        self, org_id: str, name: str, event_id: int, raw: Mapping[str, Any], *, actor: str
    ) -> dict[str, str]:
        new = link(dict(raw), "link")
        with self.db.session() as session:
            stream = _stream(session, org_id, name)
            event = _event(session, stream, event_id)
            if any(item["rel"] == new["rel"] for item in event.links):
                raise Unprocessable(f"the event already has a {new['rel']} link", field="rel")
            if len(event.links) >= MAX_LINKS:
                raise BadRequest(f"an event has at most {MAX_LINKS} links", field="rel")
            event.links = [*event.links, new]
            audit.record(session, org_id, actor, "updated", "annotation_event", str(event_id))
        return new

    def delete_link(self, org_id: str, name: str, event_id: int, rel: str, *, actor: str) -> None:
        with self.db.session() as session:
            stream = _stream(session, org_id, name)
            event = _event(session, stream, event_id)
            kept = [item for item in event.links if item["rel"] != rel]
            if len(kept) == len(event.links):
                raise NotFound(f"event {event_id} has no {rel} link")
            event.links = kept
            audit.record(session, org_id, actor, "updated", "annotation_event", str(event_id))

    # -- for charts ---------------------------------------------------------------------------

    def markers(self, org_id: str, names: Sequence[str], start: int, end: int) -> list[Marker]:
        """Events of the named streams (`*` wildcards) that overlap [start, end], earliest first;
        at most MAX_MARKERS, so a busy stream cannot bury a chart."""
        if not names:
            return []
        patterns = [wildcard(n.lower()) for n in names]
        with self.db.session() as session:
            rows = session.execute(
                select(AnnotationStream.id, AnnotationStream.key).where(
                    AnnotationStream.org_id == org_id
                )
            )
            wanted = [sid for sid, key in rows if any(p.match(key) for p in patterns)]
            if not wanted:
                return []
            e = AnnotationEvent
            query = (
                select(e.start_time, e.end_time, e.title)
                .where(
                    e.stream_id.in_(wanted),
                    e.start_time <= end,
                    or_(e.start_time >= start, e.end_time >= start),
                )
                .order_by(e.start_time, e.id)
                .limit(MAX_MARKERS)
            )
            return [Marker(s, t, title) for s, t, title in session.execute(query)]


def _time(raw: Mapping[str, Any], key: str, now: float) -> int:
    return epoch(raw[key], key, now=now)


def _check_span(start: int, end: int | None) -> None:
    if end is not None and end < start:
        raise BadRequest("must not be before start_time", field="end_time")


def _source(raw: Mapping[str, Any]) -> str | None:
    source = _text(raw, "source")
    if source is not None and not NAME.match(source):
        raise BadRequest("must be 1-255 of A-Z a-z 0-9 . : - _", field="source")
    return source


def _stream(session: Session, org_id: str, name: str) -> AnnotationStream:
    stream = session.scalar(
        select(AnnotationStream).where(
            AnnotationStream.org_id == org_id, AnnotationStream.key == name.lower()
        )
    )
    if stream is None:
        raise NotFound(f"no annotation stream named {name}")
    return stream


def _stream_or_new(session: Session, org_id: str, name: str) -> AnnotationStream:
    try:
        return _stream(session, org_id, name)
    except NotFound:
        stream = AnnotationStream(org_id=org_id, key=name.lower(), name=name)
        session.add(stream)
        session.flush()
        return stream


def _event(session: Session, stream: AnnotationStream, event_id: int) -> AnnotationEvent:
    event = session.get(AnnotationEvent, event_id) if 0 < event_id <= MAX_WHOLE else None
    if event is None or event.stream_id != stream.id:
        raise NotFound(f"no event {event_id} in stream {stream.name}")
    return event
