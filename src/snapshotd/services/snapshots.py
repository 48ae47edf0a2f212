"""Snapshot use-cases: create, read, list, delete, and the worker's start/finish/fail.

Every query is scoped by organization here, so no route can forget it: another organization's
snapshot is simply not found.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, BinaryIO

from pydantic import ValidationError
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from snapshotd.config import Settings
from snapshotd.engines import devices
from snapshotd.engines.capture import CaptureOptions, CaptureResult
from snapshotd.engines.egress import EgressPolicy
from snapshotd.errors import BadRequest, Conflict, NotFound
from snapshotd.services import webhooks
from snapshotd.store.blobs import BlobStore
from snapshotd.store.db import Database
from snapshotd.store.models import Artifact, Job, Snapshot, utcnow
from snapshotd.store.queue import Claim, JobQueue

STATUSES = ("queued", "working", "success", "failed")
KINDS = ("page", "chart", "test_window", "upload")
CAPTURE_JOB = "capture"


@dataclass(frozen=True)
class Page:
    items: list[Snapshot]
    next_cursor: str | None


def parse_options(raw: dict[str, Any]) -> CaptureOptions:
    try:
        return CaptureOptions.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise BadRequest(f"{where}: {first['msg']}", field=where) from None


class Snapshots:
    def __init__(self, settings: Settings, db: Database, queue: JobQueue, blobs: BlobStore) -> None:
        self.settings = settings
        self.db = db
        self.queue = queue
        self.blobs = blobs
        self.policy = EgressPolicy(settings.egress_allow)

    # -- validation ---------------------------------------------------------------------------

    def check_options(self, options: CaptureOptions) -> None:
        """Server-side ceilings and plainly bad URLs, refused before anything is queued."""
        s = self.settings
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
        self.policy.check_url(options.url)

    # -- create -------------------------------------------------------------------------------

    def create_page(
        self,
        org_id: str,
        options: CaptureOptions,
        *,
        surface: str = "native",
        idempotency_key: str | None = None,
        callback_url: str | None = None,
        claimed_by: str | None = None,
    ) -> Snapshot:
        self.check_options(options)
        if callback_url:
            self.policy.check_url(callback_url)
        with self.db.session() as session:
            if idempotency_key:
                existing = session.scalar(
                    select(Snapshot).where(
                        Snapshot.org_id == org_id, Snapshot.idempotency_key == idempotency_key
                    )
                )
                if existing is not None:
                    return self._check_replay(existing, options, callback_url)
            if claimed_by is None:
                self.queue.check_capacity(session)
            now = utcnow()
            snapshot = Snapshot(
                org_id=org_id,
                kind="page",
                surface=surface,
                status="working" if claimed_by else "queued",
                url=options.url,
                options=_stored(options),
                idempotency_key=idempotency_key,
                callback_url=callback_url,
                created_at=now,
                expires_at=now + timedelta(days=self.settings.snapshot_ttl_days),
            )
            session.add(snapshot)
            session.flush()
            job = self.queue.enqueue(
                session,
                CAPTURE_JOB,
                {"snapshot_id": snapshot.id},
                org_id=org_id,
                claimed_by=claimed_by,
            )
            snapshot.job_id = job.id
            try:
                session.flush()
            except IntegrityError:
                raise Conflict("a snapshot with this Idempotency-Key is being created") from None
        return snapshot

    def _check_replay(
        self, existing: Snapshot, options: CaptureOptions, callback_url: str | None
    ) -> Snapshot:
        same = existing.url == options.url and existing.callback_url == callback_url
        if not same or existing.options != _stored(options):
            raise Conflict("this Idempotency-Key was used for a different request")
        return existing

    # -- read ---------------------------------------------------------------------------------

    def _live(self, session: Session, org_id: str, snapshot_id: str) -> Snapshot:
        snapshot = session.get(Snapshot, snapshot_id)
        expired = snapshot is not None and snapshot.expires_at and snapshot.expires_at <= utcnow()
        if snapshot is None or snapshot.org_id != org_id or expired:
            raise NotFound(f"no snapshot {snapshot_id}")
        snapshot.artifacts  # noqa: B018 — load before the session closes
        return snapshot

    def get(self, org_id: str, snapshot_id: str) -> Snapshot:
        with self.db.session() as session:
            return self._live(session, org_id, snapshot_id)

    def get_with_job(self, org_id: str, snapshot_id: str) -> tuple[Snapshot, Job | None]:
        with self.db.session() as session:
            snapshot = self._live(session, org_id, snapshot_id)
            job = session.get(Job, snapshot.job_id) if snapshot.job_id else None
            return snapshot, job

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
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page:
        if status is not None and status not in STATUSES:
            raise BadRequest(f"status must be one of {', '.join(STATUSES)}", field="status")
        if kind is not None and kind not in KINDS:
            raise BadRequest(f"kind must be one of {', '.join(KINDS)}", field="kind")
        query = select(Snapshot).where(Snapshot.org_id == org_id, Snapshot.expires_at > utcnow())
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
        snapshot = self.get(org_id, snapshot_id)
        for artifact in snapshot.artifacts:
            if artifact.role == role:
                return artifact, self.blobs.open(artifact.sha256)
        if snapshot.status in ("queued", "working"):
            raise Conflict(f"snapshot {snapshot_id} is still {snapshot.status}; try again soon")
        raise NotFound(f"snapshot {snapshot_id} has no {role} artifact")

    # -- delete -------------------------------------------------------------------------------

    def delete(self, org_id: str, snapshot_id: str) -> None:
        with self.db.session() as session:
            snapshot = self._live(session, org_id, snapshot_id)
            digests = {artifact.sha256 for artifact in snapshot.artifacts}
            if snapshot.job_id:
                session.execute(
                    update(Job)
                    .where(Job.id == snapshot.job_id, Job.state == "queued")
                    .values(state="failed", error="snapshot deleted", finished_at=utcnow())
                )
            session.delete(snapshot)
            session.flush()
            still_used = set(
                session.scalars(select(Artifact.sha256).where(Artifact.sha256.in_(digests)))
            )
        for digest in digests - still_used:
            self.blobs.delete(digest)

    # -- worker side --------------------------------------------------------------------------

    def start(self, claim: Claim) -> CaptureOptions | None:
        """Marks the claimed job's snapshot working; None when the snapshot is gone."""
        with self.db.session() as session:
            snapshot = session.get(Snapshot, claim.payload["snapshot_id"])
            if snapshot is None:
                return None
            snapshot.status = "working"
            return CaptureOptions.model_validate({"url": snapshot.url, **snapshot.options})

    def finish(self, claim: Claim, result: CaptureResult) -> None:
        stored = [(artifact, self.blobs.put(artifact.data)) for artifact in result.artifacts]
        with self.db.session() as session:
            self.queue.complete(session, claim)
            snapshot = session.get(Snapshot, claim.payload["snapshot_id"])
            if snapshot is None:
                return
            session.execute(delete(Artifact).where(Artifact.snapshot_id == snapshot.id))
            for artifact, digest in stored:
                session.add(
                    Artifact(
                        snapshot_id=snapshot.id,
                        role=artifact.role,
                        sha256=digest,
                        size=len(artifact.data),
                        media_type=artifact.media_type,
                        width=artifact.width,
                        height=artifact.height,
                    )
                )
            snapshot.status, snapshot.status_message = "success", ""
            snapshot.meta = result.metadata
            snapshot.completed_at = utcnow()
            webhooks.enqueue_event(session, self.queue, snapshot, self.settings)

    def fail(self, claim: Claim, message: str, *, retry: bool) -> str:
        with self.db.session() as session:
            state = self.queue.fail(session, claim, message, retry=retry)
            snapshot = session.get(Snapshot, claim.payload.get("snapshot_id", ""))
            if snapshot is not None:
                if state == "failed":
                    snapshot.status, snapshot.completed_at = "failed", utcnow()
                    snapshot.status_message = message
                    webhooks.enqueue_event(session, self.queue, snapshot, self.settings)
                else:
                    snapshot.status = "queued"
                    snapshot.status_message = f"attempt {claim.attempt} failed: {message}; retrying"
        return state

    def fail_reaped(self, session: Session, job_ids: Sequence[str]) -> None:
        """Called by the reaper, in its transaction, for jobs that ran out of attempts."""
        snapshots = session.scalars(select(Snapshot).where(Snapshot.job_id.in_(job_ids)))
        for snapshot in snapshots:
            snapshot.status, snapshot.completed_at = "failed", utcnow()
            snapshot.status_message = (
                "gave up: the worker running this capture stopped responding too many times"
            )
            webhooks.enqueue_event(session, self.queue, snapshot, self.settings)


def _stored(options: CaptureOptions) -> dict[str, Any]:
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
