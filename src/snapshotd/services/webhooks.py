"""callback_url events: queued as jobs in the snapshot's own transaction, signed on delivery.

Signatures follow Standard Webhooks: headers `webhook-id`, `webhook-timestamp` and
`webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, keyed with the organization's
`whsec_` secret. Delivery goes through the egress guard like every other outbound connection.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
from sqlalchemy.orm import Session

from snapshotd.config import Settings
from snapshotd.store.models import Location, Organization, Snapshot
from snapshotd.store.queue import JobQueue
from snapshotd.timestamps import iso

WEBHOOK_JOB = "webhook"


def event_body(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "type": f"snapshot.{'completed' if snapshot.status == 'success' else 'failed'}",
        "timestamp": iso(snapshot.completed_at or snapshot.created_at),
        "data": {
            "id": snapshot.id,
            "kind": snapshot.kind,
            "status": snapshot.status,
            "status_message": snapshot.status_message,
            "url": snapshot.url,
        },
    }


def enqueue_event(
    session: Session, queue: JobQueue, snapshot: Snapshot, settings: Settings
) -> None:
    if not snapshot.callback_url:
        return
    queue.enqueue(
        session,
        WEBHOOK_JOB,
        {"url": snapshot.callback_url, "body": event_body(snapshot)},
        org_id=snapshot.org_id,
        max_attempts=settings.webhook_max_attempts,
    )


def enqueue_change(
    session: Session,
    queue: JobQueue,
    snapshot: Snapshot,
    location: Location,
    change: dict[str, Any],
    settings: Settings,
) -> None:
    """`location.changed`: a location's new capture differs from its previous one."""
    body = {
        "type": "location.changed",
        "timestamp": iso(snapshot.completed_at or snapshot.created_at),
        "data": {
            "location": location.id,
            "key": location.key,
            "snapshot": snapshot.id,
            "url": snapshot.url,
            **change,
        },
    }
    queue.enqueue(
        session,
        WEBHOOK_JOB,
        {"url": location.webhook_url, "body": body},
        org_id=snapshot.org_id,
        max_attempts=settings.webhook_max_attempts,
    )


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def secret_for(session: Session, org_id: str) -> str:
    org = session.get(Organization, org_id)
    if org is None:
        raise LookupError(f"organization {org_id} is gone")
    return org.webhook_secret


async def deliver(
    client: httpx.AsyncClient, *, url: str, body: dict[str, Any], secret: str, message_id: str
) -> None:
    """Raises httpx.HTTPError (including a non-2xx status) so the job is retried with backoff."""
    data = json.dumps(body, separators=(",", ":")).encode()
    timestamp = int(time.time())
    response = await client.post(
        url,
        content=data,
        headers={
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, message_id, timestamp, data),
        },
    )
    response.raise_for_status()
