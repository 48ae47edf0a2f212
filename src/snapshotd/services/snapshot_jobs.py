"""The worker's side of a snapshot: marking it working, storing a capture's artifacts and sealing
them in a signed manifest, or failing it. Each write goes through the job's claim, so a worker that
lost its lease cannot overwrite what another worker already finished.

`Snapshots` owns one of these as `snapshots.jobs`; it shares that service's database, queue, blob
store and signer rather than holding copies of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from snapshotd.engines.capture import CaptureResult
from snapshotd.errors import ArtifactsNotStored, DatabaseUnavailable
from snapshotd.services import webhooks
from snapshotd.store.models import Artifact, Snapshot, utcnow
from snapshotd.store.outages import as_outage
from snapshotd.store.queue import Claim

if TYPE_CHECKING:
    from snapshotd.services.snapshots import Snapshots


class SnapshotJobs:
    def __init__(self, snapshots: Snapshots) -> None:
        self.snapshots = snapshots
        self.settings = snapshots.settings
        self.db = snapshots.db
        self.queue = snapshots.queue
        self.blobs = snapshots.blobs

    def start(self, claim: Claim) -> Snapshot | None:
        """Marks the claimed job's snapshot working; None when the snapshot is gone. Fenced like
        every job-side write: a claim that lost its lease (its worker was frozen meanwhile) must
        not turn a snapshot another worker already finished back to `working`."""
        with self.db.session() as session:
            self.queue.hold(session, claim)
            snapshot = session.get(Snapshot, claim.payload["snapshot_id"])
            if snapshot is not None:
                snapshot.status = "working"
            return snapshot

    def finish(self, claim: Claim, result: CaptureResult) -> None:
        """Stores the artifacts, then completes the job and the snapshot in one transaction.

        A blob store out of reach or a full disk raises ArtifactsNotStored, which says so in
        plain words; the database's own errors pass through unchanged, so that the caller can
        tell "try the job again" from "try this write again"."""
        try:
            self._finish(claim, result)
        except Exception as error:
            outage = as_outage(error)
            if outage is None or isinstance(outage, DatabaseUnavailable):
                raise
            raise ArtifactsNotStored(outage) from error

    def _finish(self, claim: Claim, result: CaptureResult) -> None:
        stored = [(artifact, self.blobs.put(artifact.data)) for artifact in result.artifacts]
        with self.db.session() as session:
            if result.failure:
                self.queue.fail(session, claim, result.failure, retry=False)
            else:
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
            if result.failure:
                snapshot.status, snapshot.status_message = "failed", result.failure
            else:
                snapshot.status, snapshot.status_message = "success", ""
            snapshot.meta = result.metadata
            snapshot.completed_at = utcnow()
            session.flush()
            self.snapshots.seal(session, snapshot)
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
