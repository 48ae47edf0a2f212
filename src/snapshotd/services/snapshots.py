"""Snapshot use-cases: create, read, list, seal and delete; the worker's start/finish/fail are on
`snapshots.jobs` (`SnapshotJobs`).

Every query is scoped by organization here, so no route can forget it: another organization's
snapshot is simply not found.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, BinaryIO, Literal

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from snapshotd.config import Settings
from snapshotd.engines import devices
from snapshotd.engines.egress import EgressPolicy
from snapshotd.errors import BadRequest, Conflict, NotFound
from snapshotd.rules import SNAPSHOT_KINDS
from snapshotd.services import audit, capture_cache, manifests, timestamping
from snapshotd.services.blob_gc import delete_unreferenced
from snapshotd.services.capture_cache import CacheAsk, Cached, CaptureCache
from snapshotd.services.capture_request import CaptureRequest
from snapshotd.services.liveness import is_live, live_clause, live_snapshot
from snapshotd.services.manifests import MANIFEST_ROLE, Signer
from snapshotd.services.ratelimit import CreationLimits
from snapshotd.services.snapshot_jobs import SnapshotJobs
from snapshotd.services.thumbnails import THUMBNAIL_ROLE, evidence_artifacts
from snapshotd.services.timestamping import Timestamping
from snapshotd.store.blobs import BlobStore
from snapshotd.store.db import Database
from snapshotd.store.models import Artifact, Job, Organization, Snapshot, utcnow
from snapshotd.store.queue import JobQueue

STATUSES = ("queued", "working", "success", "failed")
KINDS = SNAPSHOT_KINDS
CAPTURE_JOB = "capture"
Archived = Literal["exclude", "include", "only"]


class InFlight(Exception):
    """The database refused a capture because an identical one is running (capture_cache.py)."""


@dataclass(frozen=True)
class Page:
    items: list[Snapshot]
    next_cursor: str | None


def device_names() -> tuple[str, ...]:
    """The devices a capture may emulate, sorted; blocking on first call (see engines/devices)."""
    return tuple(sorted(devices.descriptors()))


def check_options(settings: Settings, policy: EgressPolicy, options: CaptureRequest) -> None:
    """Server-side ceilings and plainly bad URLs, refused before anything is queued."""
    s = settings
    if options.width > s.max_width:
        raise BadRequest(f"width must be at most {s.max_width}", field="width")
    if options.height > s.max_height:
        raise BadRequest(f"height must be at most {s.max_height}", field="height")
    if options.timeout_ms is not None and options.timeout_ms > s.max_timeout_ms:
        raise BadRequest(f"timeout_ms must be at most {s.max_timeout_ms}", field="timeout_ms")
    if options.device and options.device not in devices.descriptors():
        raise BadRequest(f"unknown device {options.device!r}", field="device")
    if options.quality is not None and options.format not in ("jpeg", "webp"):
        raise BadRequest("quality applies to jpeg and webp only", field="quality")
    if options.format == "pdf" and options.selector:
        raise BadRequest("selector cannot be combined with format pdf", field="selector")
    policy.check_url(options.url)


class Snapshots:
    def __init__(self, settings: Settings, db: Database, queue: JobQueue, blobs: BlobStore) -> None:
        self.settings = settings
        self.db = db
        self.queue = queue
        self.blobs = blobs
        self.policy = EgressPolicy(settings.egress_allow)
        self.limits = CreationLimits(settings.rate_limits)
        self.signer = Signer(settings)
        self.cache = CaptureCache(settings)
        self.jobs = SnapshotJobs(self)
        self.timestamping = Timestamping(settings, db, queue, blobs)

    # -- validation ---------------------------------------------------------------------------

    def check_options(self, options: CaptureRequest) -> None:
        check_options(self.settings, self.policy, options)

    # -- create -------------------------------------------------------------------------------

    def create_page(
        self,
        org_id: str,
        options: CaptureRequest,
        *,
        surface: str = "native",
        idempotency_key: str | None = None,
        callback_url: str | None = None,
        claimed_by: str | None = None,
        actor: str = audit.SYSTEM,
        location_id: str | None = None,
        source: str | None = None,
    ) -> Snapshot:
        """Queues a page capture (or starts it claimed by `claimed_by`), counted against the
        organization's creation limit for `surface`."""
        self.check_options(options)
        if callback_url:
            self.policy.check_url(callback_url)
        with self.db.session() as session:
            return self._create_page(
                session,
                org_id,
                options,
                surface=surface,
                idempotency_key=idempotency_key,
                callback_url=callback_url,
                claimed_by=claimed_by,
                actor=actor,
                location_id=location_id,
                source=source,
            )

    def create_cached(
        self,
        org_id: str,
        options: CaptureRequest,
        ask: CacheAsk,
        *,
        surface: str,
        claimed_by: str | None = None,
        actor: str = audit.SYSTEM,
        idempotency_key: str | None = None,
        callback_url: str | None = None,
    ) -> Cached:
        """A capture through the cache (services/capture_cache.py): a fresh or running identical
        capture of the organization when there is one, else a new one that later identical
        requests find. Reuse takes nothing from the creation limit."""
        self.check_options(options)
        if callback_url:
            self.policy.check_url(callback_url)
        key = capture_cache.cache_key(options)
        keyed = True
        for _ in range(3):
            try:
                with self.db.session() as session:
                    ttl = self.cache.ttl(session, org_id, ask)
                    reuse = ttl > 0 and not ask.force
                    found = self.cache.find(session, org_id, key, ttl) if reuse else None
                    if found is not None:
                        return Cached(found, cached=True, ttl=ttl)
                    snapshot = self._create_page(
                        session,
                        org_id,
                        options,
                        surface=surface,
                        idempotency_key=idempotency_key,
                        callback_url=callback_url,
                        claimed_by=claimed_by,
                        actor=actor,
                        cache_key=key if keyed else None,
                    )
                    return Cached(snapshot, cached=False, ttl=ttl)
            except InFlight:
                # An identical capture started meanwhile: a request that may reuse looks again and
                # joins it; a forced one (or one with the cache off) captures without the key.
                keyed = reuse
        raise Conflict("an identical capture started and ended meanwhile; try again")

    def _create_page(
        self,
        session: Session,
        org_id: str,
        options: CaptureRequest,
        *,
        surface: str,
        idempotency_key: str | None,
        callback_url: str | None,
        claimed_by: str | None,
        actor: str,
        location_id: str | None = None,
        source: str | None = None,
        cache_key: str | None = None,
    ) -> Snapshot:
        if idempotency_key:
            existing = session.scalar(
                select(Snapshot).where(
                    Snapshot.org_id == org_id, Snapshot.idempotency_key == idempotency_key
                )
            )
            if existing is not None:
                return self._check_replay(existing, options, callback_url)
        try:
            snapshot = self.create(
                session,
                org_id,
                "page",
                CAPTURE_JOB,
                url=options.url,
                options=_stored(options),
                surface=surface,
                idempotency_key=idempotency_key,
                callback_url=callback_url,
                claimed_by=claimed_by,
                actor=actor,
                location_id=location_id,
                source=source,
                cache_key=cache_key,
            )
            session.flush()
        except IntegrityError:
            if cache_key is not None:
                raise InFlight from None
            if idempotency_key:
                raise Conflict("a snapshot with this Idempotency-Key is being created") from None
            raise
        return snapshot

    def create(
        self,
        session: Session,
        org_id: str,
        kind: str,
        job_kind: str | None,
        *,
        url: str = "",
        options: dict[str, Any],
        surface: str,
        actor: str,
        idempotency_key: str | None = None,
        callback_url: str | None = None,
        claimed_by: str | None = None,
        location_id: str | None = None,
        source: str | None = None,
        cache_key: str | None = None,
    ) -> Snapshot:
        """A snapshot of any kind and the job that makes it, in the caller's transaction: checks
        the queue's capacity, takes one from the `surface` creation limit, sets the expiry and
        writes the audit record. Without a `job_kind` the caller makes the snapshot at once and
        it is created complete."""
        if claimed_by is None and job_kind is not None:
            self.queue.check_capacity(session)
        self.limits.take(session, org_id, surface)
        now = utcnow()
        snapshot = Snapshot(
            org_id=org_id,
            kind=kind,
            surface=surface,
            status="success" if job_kind is None else "working" if claimed_by else "queued",
            url=url,
            options=options,
            idempotency_key=idempotency_key,
            callback_url=callback_url,
            created_at=now,
            completed_at=now if job_kind is None else None,
            location_id=location_id,
            source=source,
            cache_key=cache_key,
            expires_at=now + timedelta(days=self.retention_days(session, org_id, kind)),
        )
        session.add(snapshot)
        session.flush()
        audit.record(session, org_id, actor, "created", "snapshot", snapshot.id, surface=surface)
        if job_kind is None:
            return snapshot
        job = self.queue.enqueue(
            session, job_kind, {"snapshot_id": snapshot.id}, org_id=org_id, claimed_by=claimed_by
        )
        snapshot.job_id = job.id
        return snapshot

    def retention_days(self, session: Session, org_id: str, kind: str) -> int:
        """The organization's setting for `kind`, else the instance's, else snapshot_ttl_days."""
        org = session.get(Organization, org_id)
        if org is not None and kind in org.retention_days:
            return int(org.retention_days[kind])
        return int(self.settings.retention_days.get(kind, self.settings.snapshot_ttl_days))

    def _check_replay(
        self, existing: Snapshot, options: CaptureRequest, callback_url: str | None
    ) -> Snapshot:
        same = existing.url == options.url and existing.callback_url == callback_url
        if not same or existing.options != _stored(options):
            raise Conflict("this Idempotency-Key was used for a different request")
        return existing

    # -- read ---------------------------------------------------------------------------------

    def get(self, org_id: str, snapshot_id: str) -> Snapshot:
        with self.db.session() as session:
            return live_snapshot(session, org_id, snapshot_id)

    def get_with_job(self, org_id: str, snapshot_id: str) -> tuple[Snapshot, Job | None]:
        """The hottest read of the API: the snapshot and its job in one query, its artifacts in
        a second."""
        with self.db.session() as session:
            found = session.execute(
                select(Snapshot, Job)
                .outerjoin(Job, Job.id == Snapshot.job_id)
                .where(Snapshot.id == snapshot_id)
                .options(selectinload(Snapshot.artifacts))
            ).first()
            if found is None or found[0].org_id != org_id or not is_live(found[0]):
                raise NotFound(f"no snapshot {snapshot_id}")
            return found[0], found[1]

    def get_job(self, org_id: str, job_id: str) -> Job:
        with self.db.session() as session:
            job = session.get(Job, job_id)
            if job is None or job.org_id != org_id:
                raise NotFound(f"no job {job_id}")
            return job

    def list(
        self,
        org_id: str,
        *,
        status: str | None = None,
        kind: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        archived: Archived = "exclude",
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page:
        """Newest first; archived snapshots are left out unless `archived` asks for them."""
        if status is not None and status not in STATUSES:
            raise BadRequest(f"status must be one of {', '.join(STATUSES)}", field="status")
        if kind is not None and kind not in KINDS:
            raise BadRequest(f"kind must be one of {', '.join(KINDS)}", field="kind")
        query = select(Snapshot).where(Snapshot.org_id == org_id, live_clause(utcnow()))
        if archived == "exclude":
            query = query.where(Snapshot.archived_at.is_(None))
        elif archived == "only":
            query = query.where(Snapshot.archived_at.is_not(None))
        if status:
            query = query.where(Snapshot.status == status)
        if kind:
            query = query.where(Snapshot.kind == kind)
        if created_after:
            query = query.where(Snapshot.created_at >= created_after)
        if created_before:
            query = query.where(Snapshot.created_at < created_before)
        if cursor:
            query = query.where(Snapshot.id < _decode_cursor(cursor))
        query = query.order_by(Snapshot.id.desc()).limit(limit + 1)
        with self.db.session() as session:
            items = list(session.scalars(query))
            for item in items:
                item.artifacts  # noqa: B018
        more = len(items) > limit
        items = items[:limit]
        return Page(items, _encode_cursor(items[-1].id) if more and items else None)

    def open_artifact(self, org_id: str, snapshot_id: str, role: str) -> tuple[Artifact, BinaryIO]:
        artifact = self.artifact(org_id, snapshot_id, role)
        return artifact, self.blobs.open(artifact.sha256)

    def artifact(self, org_id: str, snapshot_id: str, role: str) -> Artifact:
        """The row of the snapshot's `role` artifact; Conflict while it is being made."""
        snapshot = self.get(org_id, snapshot_id)
        for artifact in snapshot.artifacts:
            if artifact.role == role:
                return artifact
        if snapshot.status in ("queued", "working"):
            raise Conflict(f"snapshot {snapshot_id} is still {snapshot.status}; try again soon")
        raise NotFound(f"snapshot {snapshot_id} has no {role} artifact")

    def open_blob(self, sha256: str, offset: int = 0) -> BinaryIO:
        """The bytes of an artifact the caller has read already, by its digest, from `offset`
        on."""
        return self.blobs.open(sha256, offset)

    def bundle(self, org_id: str, snapshot_id: str) -> bytes:
        """The signed manifest and every evidence artifact, zipped with the key that verifies
        them (manifests.bundle), and the trusted timestamps with their companion."""
        snapshot = self.get(org_id, snapshot_id)
        files, manifest = {}, None
        for artifact in evidence_artifacts(snapshot.artifacts):
            with self.blobs.open(artifact.sha256) as stream:
                data = stream.read()
            if artifact.role == MANIFEST_ROLE:
                manifest, digest = data, artifact.sha256
            else:
                files[f"{artifact.role}.{manifests.extension(artifact.media_type)}"] = data
        if manifest is None:
            raise Conflict(f"snapshot {snapshot_id} has no signed manifest yet")
        listed = timestamping.companion(digest, snapshot.meta or {})
        if listed is not None:
            files[timestamping.COMPANION] = listed
        return manifests.bundle(manifest, files, self.signer.public())

    # -- evidence -----------------------------------------------------------------------------

    def seal(self, session: Session, snapshot: Snapshot) -> None:
        """Writes the signed manifest of the snapshot's artifacts, as its `manifest` artifact."""
        rows = session.scalars(
            select(Artifact).where(
                Artifact.snapshot_id == snapshot.id,
                Artifact.role.not_in((MANIFEST_ROLE, THUMBNAIL_ROLE)),
                Artifact.role.not_like(f"{timestamping.TIMESTAMP_ROLE}%"),
            )
        )
        listed = [
            {
                "role": a.role,
                "media_type": a.media_type,
                "size": a.size,
                "sha256": a.sha256,
                "width": a.width,
                "height": a.height,
            }
            for a in rows
        ]
        data = self.signer.manifest(snapshot, listed)
        session.execute(
            delete(Artifact).where(
                Artifact.snapshot_id == snapshot.id, Artifact.role == MANIFEST_ROLE
            )
        )
        digest = self.blobs.put(data)
        session.add(
            Artifact(
                snapshot_id=snapshot.id,
                role=MANIFEST_ROLE,
                sha256=digest,
                size=len(data),
                media_type="application/json",
            )
        )
        self.timestamping.sealed(session, snapshot, digest)

    # -- delete -------------------------------------------------------------------------------

    def delete(self, org_id: str, snapshot_id: str, *, actor: str = audit.SYSTEM) -> None:
        with self.db.session() as session:
            snapshot = live_snapshot(session, org_id, snapshot_id)
            if snapshot.legal_hold:
                raise Conflict(f"snapshot {snapshot_id} is under legal hold; lift the hold first")
            digests = {artifact.sha256 for artifact in snapshot.artifacts}
            if snapshot.job_id:
                session.execute(
                    update(Job)
                    .where(Job.id == snapshot.job_id, Job.state == "queued")
                    .values(state="failed", error="snapshot deleted", finished_at=utcnow())
                )
            session.delete(snapshot)
            audit.record(session, org_id, actor, "deleted", "snapshot", snapshot_id)
        delete_unreferenced(self.db, self.blobs, digests, self.settings.blob_grace_seconds)


def _stored(options: CaptureRequest) -> dict[str, Any]:
    return options.model_dump(mode="json", exclude_defaults=True)


def _encode_cursor(snapshot_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"before": snapshot_id}).encode()).decode()


def _decode_cursor(cursor: str) -> str:
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode()))["before"]
        if not isinstance(value, str):
            raise ValueError
        return value
    except (ValueError, KeyError, TypeError):
        raise BadRequest("cursor is not one this API handed out", field="cursor") from None
