"""Ironclad Clickwrap v1.1 response bodies: locations, snapshots and the Collection envelope, in
Clickwrap's shapes (integer `account`, `site` and user fields standing for snapshotd's string ids,
Clickwrap's snapshot statuses, a signed `snapshot_download_url`).
"""

from __future__ import annotations

import zlib
from typing import Any

from fastapi import Request

from snapshotd.http.deps import Services, public_base
from snapshotd.services.records import Location, Snapshot
from snapshotd.timestamps import iso

DOWNLOAD_LIFETIME = 3600
_STATUS = {"queued": "processing", "working": "processing", "success": "success"}


def _number(text: str | None) -> int | None:
    """Clickwrap's integer ids, as stable numbers standing for snapshotd's string ids."""
    return None if not text else zlib.crc32(text.encode())


def collection(items: list[dict[str, Any]], page: int, per_page: int, total: int):
    return {
        "count": len(items),
        "has_more": page * per_page < total,
        "page": page,
        "per_page": per_page,
        "total_count": total,
        "data": items,
    }


def location_body(location: Location) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": location.id,
        "account": _number(location.org_id),
        "site": _number(location.org_id),
        "key": location.key,
        "name": location.name,
        "description": location.description,
        "status": location.status,
        "published": location.status != "draft",
        "published_by": _number(location.published_by),
        "published_time": iso(location.published_at),
        "archived": location.status == "archived",
        "archived_reason": location.archived_reason,
        "last_acceptance": None,
        "created_by": _number(location.created_by),
        "created_time": iso(location.created_at),
        "updated_by": _number(location.updated_by),
        "updated_time": iso(location.updated_at),
        "location_type": location.location_type,
    }
    if location.location_type == "web":
        body.update(
            capture_url=location.capture_url,
            platform=location.platform,
            frequency=location.frequency,
            capture_attempts=location.capture_attempts,
            error_message=location.error_message,
            capture=location.capture or {},
            change_threshold=location.change_threshold,
            webhook_url=location.webhook_url,
        )
    else:
        body.update(
            application_id=location.application_id,
            application_name=location.application_name,
            mobile_os=location.mobile_os,
            frequency=location.frequency,
        )
    return body


def _metadata(snapshot: Snapshot) -> dict[str, Any]:
    meta = snapshot.meta or {}
    if snapshot.kind == "upload":
        return meta
    agent = meta.get("user_agent") or {}
    browser, system = agent.get("browser") or {}, agent.get("os") or {}
    viewport = meta.get("viewport") or {}
    body: dict[str, Any] = {
        "captured_time": meta.get("captured_at"),
        "page_url": meta.get("final_url") or snapshot.url,
        "selector": meta.get("selector"),
        "useragent": {
            "browser": {
                "name": browser.get("name"),
                "major": str(browser.get("version") or "").split(".")[0] or None,
            },
            "os": {"name": system.get("name"), "version": system.get("version")},
        },
        "viewport": {"width": viewport.get("width"), "height": viewport.get("height")},
    }
    if meta.get("change"):
        body["change"] = meta["change"]  # snapshotd's change detection
    if meta.get("device"):
        body.update(
            device_model=meta["device"],
            device_os=system.get("name"),
            resolution=f"{viewport.get('width')}x{viewport.get('height')}",
        )
    return body


def snapshot_body(request: Request, services: Services, snapshot: Snapshot) -> dict[str, Any]:
    image = next((a for a in snapshot.artifacts if a.role == "image"), None)
    download = None
    if image is not None:
        expires, signature = services.downloads.sign(snapshot, "image", lifetime=DOWNLOAD_LIFETIME)
        base = public_base(request, services)
        download = f"{base}/v1.1/downloads/{snapshot.id}?expires={expires}&sig={signature}"
    captured = (snapshot.meta or {}).get("captured_at") or (snapshot.meta or {}).get(
        "captured_time"
    )
    return {
        "id": snapshot.id,
        "status": _STATUS.get(snapshot.status, "failure"),
        "status_message": snapshot.status_message or None,
        "source": snapshot.source or "triggered",
        "snapshot_location": snapshot.location_id,
        "account": _number(snapshot.org_id),
        "site": _number(snapshot.org_id),
        "is_manual": snapshot.kind == "upload",
        "is_test": False,
        "archived": snapshot.archived_at is not None,
        "archived_by": _number(snapshot.archived_by),
        "archived_reason": snapshot.archived_reason,
        "captured_time": captured,
        "created_time": iso(snapshot.created_at),
        "updated_time": iso(snapshot.completed_at or snapshot.created_at),
        "expiration_time": iso(snapshot.expires_at),
        "image_path": f"{image.sha256}.{image.media_type.split('/')[-1]}" if image else None,
        "snapshot_download_url": download,
        "metadata": _metadata(snapshot),
    }
