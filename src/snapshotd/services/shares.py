"""Share links: an unguessable id that shows one snapshot without an API token.

A public link works for anyone who has it; a private one ("saved event") only for a signed-in
member of the owning organization. A link never outlives its snapshot (unless that snapshot is under
legal hold), and every read checks revocation and expiry in the database, so revoking a link or
reaching its `expires_at` takes effect at once on every API process, before any sweep.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import select

from snapshotd.config import Settings
from snapshotd.errors import BadRequest, Gone, NotFound
from snapshotd.services import audit
from snapshotd.services.accounts import Principal
from snapshotd.services.liveness import is_live, live_snapshot
from snapshotd.store.db import Database
from snapshotd.store.models import Share, Snapshot, utcnow

MAX_SHARE_SECONDS = 10 * 365 * 86_400


def new_share_id() -> str:
    return secrets.token_urlsafe(32)


def share_state(share: Share, now: datetime | None = None) -> str:
    if share.revoked_at is not None:
        return "revoked"
    return "active" if share.expires_at > (now or utcnow()) else "expired"


class Shares:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db

    def create(
        self,
        principal: Principal,
        snapshot_id: str,
        *,
        public: bool = True,
        expires_in: int | None = None,
        evidence: bool = False,
        replay: bool = False,
    ) -> Share:
        """`expires_in` seconds, capped at the snapshot's own expiry; by default the link lives
        as long as the snapshot. `evidence` lets the link serve the signed bundle, `replay` the
        archived page to browse."""
        if expires_in is not None and not 1 <= expires_in <= MAX_SHARE_SECONDS:
            raise BadRequest(
                f"expires_in must be between 1 and {MAX_SHARE_SECONDS} seconds", field="expires_in"
            )
        now = utcnow()
        with self.db.session() as session:
            snapshot = live_snapshot(session, principal.org_id, snapshot_id)
            if expires_in:
                expires_at = now + timedelta(seconds=expires_in)
                if snapshot.expires_at is not None and not snapshot.legal_hold:
                    expires_at = min(expires_at, snapshot.expires_at)
            elif snapshot.expires_at is not None and snapshot.expires_at > now:
                expires_at = snapshot.expires_at
            else:
                expires_at = now + timedelta(days=self.settings.snapshot_ttl_days)
            share = Share(
                id=new_share_id(),
                org_id=principal.org_id,
                snapshot_id=snapshot.id,
                public=public,
                evidence=evidence,
                replay=replay,
                created_by=principal.email,
                created_at=now,
                expires_at=expires_at,
            )
            session.add(share)
            audit.record(
                session,
                principal.org_id,
                principal.email,
                "shared",
                "snapshot",
                snapshot.id,
                share=share.id[:8],
                public=public,
                # Named only when on, so the usual link's entry reads as it always did.
                **{name: True for name, on in (("evidence", evidence), ("replay", replay)) if on},
            )
        return share

    def list(self, org_id: str, snapshot_id: str) -> list[Share]:
        with self.db.session() as session:
            live_snapshot(session, org_id, snapshot_id)
            statement = (
                select(Share)
                .where(Share.org_id == org_id, Share.snapshot_id == snapshot_id)
                .order_by(Share.created_at.desc())
            )
            return list(session.scalars(statement))

    def revoke(self, principal: Principal, share_id: str) -> Share:
        with self.db.session() as session:
            share = session.get(Share, share_id)
            if share is None or share.org_id != principal.org_id:
                raise NotFound("no such share link")
            if share.revoked_at is None:
                share.revoked_at = utcnow()
                audit.record(
                    session,
                    principal.org_id,
                    principal.email,
                    "revoked",
                    "share",
                    share_id[:8],
                    snapshot=share.snapshot_id,
                )
            return share

    def open(self, share_id: str, viewer: Principal | None = None) -> tuple[Share, Snapshot]:
        """The link and its snapshot, for a visitor. Unknown, expired, or private to another
        organization: 404. Revoked: 410."""
        missing = NotFound("this share link does not exist or has expired")
        if not share_id or len(share_id) > 64:
            raise missing
        now = utcnow()
        with self.db.session() as session:
            share = session.get(Share, share_id)
            if share is None or share.expires_at <= now:
                raise missing
            if not share.public and (viewer is None or viewer.org_id != share.org_id):
                raise missing
            if share.revoked_at is not None:
                raise Gone("this share link was revoked")
            snapshot = session.get(Snapshot, share.snapshot_id)
            if snapshot is None or not is_live(snapshot, now):
                raise missing
            snapshot.artifacts  # noqa: B018 — load before the session closes
            return share, snapshot
