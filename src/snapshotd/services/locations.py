"""Snapshot locations (Clickwrap): the pages whose look an organization keeps as evidence.

A location starts as a draft, is published (then captured on its `frequency`, or when triggered)
and may be archived; only drafts can be deleted, and a key can change only while a draft. A web
location is captured by Chromium like any page snapshot: `platform` ios or android emulates a
phone; snapshotd's own capture settings (`selector`, `width`, `height`, `full_page` and the
real-world page options such as `block_ads`, `consent` or `timezone`) live in `capture`. A
mobile-app location is captured on the device and uploaded (`location_uploads`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from snapshotd.errors import BadRequest, Conflict, NotFound
from snapshotd.services import audit
from snapshotd.services.capture_request import PAGE_OPTIONS, parse_request
from snapshotd.services.liveness import live_clause
from snapshotd.services.snapshots import Snapshots
from snapshotd.store.models import Location, Snapshot, utcnow

TYPES = ("web", "mobile_app")
PLATFORMS = ("desktop", "ios", "android")
FREQUENCIES = ("daily", "weekly", "monthly", "never")
MOBILE_OS = ("ios", "android")
DEVICES = {"ios": "iPhone 15", "android": "Pixel 7"}
PERIODS = {"daily": timedelta(days=1), "weekly": timedelta(days=7), "monthly": timedelta(days=30)}
CAPTURE_SETTINGS = ("selector", "width", "height", "full_page", *PAGE_OPTIONS)


@dataclass
class LocationFields:
    """What a create or an update sets; None leaves a field alone."""

    key: str | None = None
    name: str | None = None
    description: str | None = None
    location_type: str | None = None
    capture_url: str | None = None
    platform: str | None = None
    frequency: str | None = None
    application_id: str | None = None
    application_name: str | None = None
    mobile_os: str | None = None
    capture: dict[str, Any] = field(default_factory=dict)
    change_threshold: float | None = None
    webhook_url: str | None = None


class Locations:
    def __init__(self, snapshots: Snapshots) -> None:
        self.snapshots = snapshots
        self.db = snapshots.db
        self.settings = snapshots.settings

    # -- locations ----------------------------------------------------------------------------

    def _check(self, fields: LocationFields, location_type: str) -> None:
        for name, allowed in (
            ("location_type", TYPES),
            ("platform", PLATFORMS),
            ("frequency", FREQUENCIES),
            ("mobile_os", MOBILE_OS),
        ):
            value = getattr(fields, name)
            if value is not None and value not in allowed:
                raise BadRequest(f"{name} must be one of {', '.join(allowed)}", field=name)
        if fields.capture_url is not None:
            try:
                self.snapshots.policy.check_url(fields.capture_url)
            except BadRequest as error:
                raise BadRequest(error.detail, field="capture_url") from None
        if fields.change_threshold is not None and not 0 <= fields.change_threshold <= 100:
            raise BadRequest("must be a percentage from 0 to 100", field="change_threshold")
        if fields.webhook_url:
            try:
                self.snapshots.policy.check_url(fields.webhook_url)
            except BadRequest as error:
                raise BadRequest(error.detail, field="webhook_url") from None
        if fields.capture:
            unknown = set(fields.capture) - set(CAPTURE_SETTINGS)
            if unknown:
                raise BadRequest(f"unknown capture settings: {', '.join(sorted(unknown))}")
            url = fields.capture_url or "https://example.org/"
            self.snapshots.check_options(parse_request({"url": url, **fields.capture}))

    def create(self, org_id: str, fields: LocationFields, *, actor: str) -> Location:
        kind = fields.location_type or ("mobile_app" if fields.application_id else "web")
        required = ["key", "name"]
        required += ["capture_url"] if kind == "web" else ["application_id", "application_name"]
        for name in required:
            if not getattr(fields, name):
                raise BadRequest(f"{name} is required", field=name)
        self._check(fields, kind)
        now = utcnow()
        location = Location(
            org_id=org_id,
            location_type=kind,
            created_by=actor,
            updated_by=actor,
            created_at=now,
            updated_at=now,
            description="",
            capture={},
            change_threshold=0.5,
            status="draft",
            platform="desktop",
            frequency="never",
            capture_attempts=0,
        )
        if kind == "mobile_app":
            location.mobile_os = "ios"
        _apply(location, fields)
        try:
            with self.db.session() as session:
                session.add(location)
                session.flush()
                audit.record(session, org_id, actor, "created", "location", location.id)
        except IntegrityError:
            raise Conflict(f"a location with key {fields.key!r} already exists") from None
        return location

    def find(self, org_id: str, *, page: int, per_page: int) -> tuple[list[Location], int]:
        scope = Location.org_id == org_id
        with self.db.session() as session:
            total = session.scalar(select(func.count()).select_from(Location).where(scope)) or 0
            query = select(Location).where(scope).order_by(Location.created_at, Location.id)
            items = session.scalars(query.offset((page - 1) * per_page).limit(per_page))
            return list(items), total

    def get(self, org_id: str, location_id: str) -> Location:
        with self.db.session() as session:
            return _location(session, org_id, location_id)

    def update(
        self, org_id: str, location_id: str, fields: LocationFields, *, actor: str
    ) -> Location:
        try:
            with self.db.session() as session:
                location = _location(session, org_id, location_id)
                renamed = fields.key is not None and fields.key != location.key
                if renamed and location.status != "draft":
                    raise BadRequest("key can change only while the location is a draft")
                if fields.location_type not in (None, location.location_type):
                    raise BadRequest("location_type cannot change", field="location_type")
                self._check(fields, location.location_type)
                _apply(location, fields)
                location.updated_by, location.updated_at = actor, utcnow()
                if location.status == "published":
                    location.next_capture_at = _next(location.frequency, utcnow())
                audit.record(session, org_id, actor, "updated", "location", location_id)
        except IntegrityError:
            raise Conflict(f"a location with key {fields.key!r} already exists") from None
        return location

    def delete(self, org_id: str, location_id: str, *, actor: str) -> None:
        with self.db.session() as session:
            location = _location(session, org_id, location_id)
            if location.status != "draft":
                raise BadRequest("only a draft location can be deleted; archive it instead")
            session.delete(location)
            audit.record(session, org_id, actor, "deleted", "location", location_id)

    def publish(self, org_id: str, location_id: str, *, actor: str) -> Location:
        with self.db.session() as session:
            location = _location(session, org_id, location_id)
            if location.status == "archived":
                raise BadRequest("an archived location cannot be published")
            if location.status == "draft":
                now = utcnow()
                location.status, location.published_at, location.published_by = (
                    "published",
                    now,
                    actor,
                )
                location.next_capture_at = _next(location.frequency, now, first=True)
                audit.record(session, org_id, actor, "published", "location", location_id)
            return location

    def archive(self, org_id: str, location_id: str, *, actor: str, reason: str) -> Location:
        with self.db.session() as session:
            location = _location(session, org_id, location_id)
            if location.status != "published":
                raise BadRequest("only a published location can be archived")
            location.status, location.archived_reason = "archived", reason
            location.next_capture_at = None
            audit.record(session, org_id, actor, "archived", "location", location_id)
            return location

    def clone(self, org_id: str, location_id: str, *, actor: str) -> Location:
        """A draft copy with the same settings, under the first free key `<key>-copy[-N]`."""
        source = self.get(org_id, location_id)
        with self.db.session() as session:
            taken = set(
                session.scalars(
                    select(Location.key).where(
                        Location.org_id == org_id, Location.key.startswith(f"{source.key}-copy")
                    )
                )
            )
        key, number = f"{source.key}-copy", 1
        while key in taken:
            number += 1
            key = f"{source.key}-copy-{number}"
        fields = LocationFields(
            key=key,
            name=f"{source.name} (copy)",
            description=source.description,
            location_type=source.location_type,
            capture_url=source.capture_url,
            platform=source.platform,
            frequency=source.frequency,
            application_id=source.application_id,
            application_name=source.application_name,
            mobile_os=source.mobile_os,
            capture=dict(source.capture or {}),
            change_threshold=source.change_threshold,
            webhook_url=source.webhook_url,
        )
        return self.create(org_id, fields, actor=actor)

    # -- snapshots of a location --------------------------------------------------------------

    def capture(
        self, org_id: str, location_id: str, *, actor: str, source: str = "triggered"
    ) -> Snapshot:
        location = self.get(org_id, location_id)
        if location.status == "archived":
            raise BadRequest("this location is archived; captures are closed", field="id")
        if location.location_type != "web" or not location.capture_url:
            raise BadRequest("a mobile app location is captured on the device; upload it")
        settings: dict[str, Any] = {"url": location.capture_url, **(location.capture or {})}
        if location.platform in DEVICES:
            settings["device"] = DEVICES[location.platform]
        snapshot = self.snapshots.create_page(
            org_id,
            parse_request(settings),
            surface="clickwrap",
            actor=actor,
            location_id=location.id,
            source=source,
        )
        return self.snapshots.get(org_id, snapshot.id)

    def snapshots_of(
        self, org_id: str, location_id: str, *, page: int, per_page: int
    ) -> tuple[list[Snapshot], int]:
        """The location's live snapshots, newest first: an expired one, which a read by id
        answers 404, is not listed either."""
        self.get(org_id, location_id)
        scope = (
            Snapshot.org_id == org_id,
            Snapshot.location_id == location_id,
            live_clause(utcnow()),
        )
        with self.db.session() as session:
            total = session.scalar(select(func.count()).select_from(Snapshot).where(*scope)) or 0
            query = select(Snapshot).where(*scope).order_by(Snapshot.id.desc())
            items = list(session.scalars(query.offset((page - 1) * per_page).limit(per_page)))
            for item in items:
                item.artifacts  # noqa: B018 — load before the session closes
        return items, total

    def snapshot(self, org_id: str, location_id: str, snapshot_id: str) -> Snapshot:
        snapshot = self.snapshots.get(org_id, snapshot_id)
        if snapshot.location_id != location_id:
            raise NotFound(f"no snapshot {snapshot_id} at location {location_id}")
        return snapshot

    # -- schedule -----------------------------------------------------------------------------

    def due(self, now: datetime | None = None) -> int:
        """Captures every published location whose next capture time has come (`automated`)."""
        now = now or utcnow()
        with self.db.session() as session:
            rows = list(
                session.scalars(
                    select(Location).where(
                        Location.status == "published",
                        Location.next_capture_at.is_not(None),
                        Location.next_capture_at <= now,
                    )
                )
            )
            for location in rows:
                # Claim this capture first, so another worker's scheduler skips it.
                location.next_capture_at = _next(location.frequency, now)
        started = 0
        for location in rows:
            try:
                self.capture(location.org_id, location.id, actor=audit.SYSTEM, source="automated")
                started += 1
            except Exception as error:  # a bad location must not stop the others
                with self.db.session() as session:
                    stored = session.get(Location, location.id)
                    if stored is not None:
                        stored.error_message = str(error)
        return started


def _next(frequency: str, now: datetime, *, first: bool = False) -> datetime | None:
    if frequency not in PERIODS:
        return None
    return now if first else now + PERIODS[frequency]


def _apply(location: Location, fields: LocationFields) -> None:
    for name in (
        "key",
        "name",
        "description",
        "capture_url",
        "platform",
        "frequency",
        "application_id",
        "application_name",
        "mobile_os",
    ):
        value = getattr(fields, name)
        if value is not None:
            setattr(location, name, value)
    if fields.capture:
        location.capture = {**(location.capture or {}), **fields.capture}
    if fields.change_threshold is not None:
        location.change_threshold = fields.change_threshold
    if fields.webhook_url is not None:
        location.webhook_url = fields.webhook_url or None


def _location(session: Any, org_id: str, location_id: str) -> Location:
    location = session.get(Location, location_id)
    if location is None or location.org_id != org_id:
        raise NotFound(f"no location {location_id}")
    return location
