"""How snapshots read in the console: names, times, sizes, and the live status the pages poll."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from snapshotd import timestamps
from snapshotd.services.console_reads import has_image
from snapshotd.services.records import Job, Share, Snapshot
from snapshotd.services.shares import share_state

LIVE = ("queued", "working")
STATUS_LABELS = {
    "queued": "Queued",
    "working": "Capturing",
    "success": "Done",
    "failed": "Failed",
}
KIND_LABELS = {"page": "Page", "chart": "Chart", "test_window": "Test window", "upload": "Upload"}
DONE_MESSAGES = {
    "archived": "The snapshot is archived: it is hidden from the default listing.",
    "unarchived": "The snapshot is back in the default listing.",
    "held": "The snapshot is under legal hold: it will not expire and cannot be deleted.",
    "released": "The legal hold is lifted.",
    "shared": "A share link was created.",
    "revoked": "The share link is revoked.",
    "deleted": "The snapshot was deleted.",
    "queued": "The capture is queued.",
}
# Share link lifetimes offered by the form, in seconds; 0 means "as long as the snapshot".
SHARE_LIVES = {
    0: "As long as the snapshot",
    86_400: "1 day",
    604_800: "7 days",
    2_592_000: "30 days",
}


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else ""


def iso(moment: datetime | None) -> str:
    return timestamps.iso(moment) or ""


def size(count: int | None) -> str:
    value = float(count or 0)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return ""


def source(snapshot: Snapshot) -> str:
    """What the snapshot shows: the page's URL, or the chart's or test's name."""
    options = snapshot.options or {}
    if snapshot.kind == "chart":
        chart = options.get("chart") or {}
        return str(chart.get("name") or options.get("name") or "Chart")
    if snapshot.kind == "test_window":
        return str(options.get("display_name") or f"Test {options.get('test_id', '')}".strip())
    if snapshot.url:
        return snapshot.url
    return str((snapshot.meta or {}).get("title") or KIND_LABELS.get(snapshot.kind, "Snapshot"))


def title(snapshot: Snapshot) -> str:
    meta_title = (snapshot.meta or {}).get("title")
    return str(meta_title) if snapshot.kind == "page" and meta_title else source(snapshot)


def live_status(snapshot: Snapshot, job: Job | None) -> dict[str, Any]:
    """The small JSON a page polls while a capture runs."""
    base = f"/console/snapshots/{snapshot.id}"
    done = snapshot.status not in LIVE
    return {
        "id": snapshot.id,
        "status": snapshot.status,
        "label": STATUS_LABELS.get(snapshot.status, snapshot.status),
        "done": done,
        "message": snapshot.status_message or "",
        "attempts": job.attempts if job else 0,
        "thumbnail": f"{base}/thumbnail" if done and has_image(snapshot) else None,
    }


def card(snapshot: Snapshot, job: Job | None) -> dict[str, Any]:
    return {
        "id": snapshot.id,
        "href": f"/console/snapshots/{snapshot.id}",
        "title": title(snapshot),
        "source": source(snapshot),
        "kind": KIND_LABELS.get(snapshot.kind, snapshot.kind),
        "status": snapshot.status,
        "label": STATUS_LABELS.get(snapshot.status, snapshot.status),
        "live": snapshot.status in LIVE,
        "created": when(snapshot.created_at),
        "created_iso": iso(snapshot.created_at),
        "thumbnail": f"/console/snapshots/{snapshot.id}/thumbnail" if has_image(snapshot) else None,
        "archived": snapshot.archived_at is not None,
        "held": snapshot.legal_hold,
    }


def facts(snapshot: Snapshot) -> list[tuple[str, str]]:
    """The capture's recorded facts, as (label, value) rows; empty values are left out."""
    meta = snapshot.meta or {}
    agent = meta.get("user_agent") or {}
    viewport = meta.get("viewport") or {}
    browser, system = agent.get("browser") or {}, agent.get("os") or {}
    rows = [
        ("Requested URL", str(meta.get("requested_url") or snapshot.url or "")),
        ("Final URL", str(meta.get("final_url") or "")),
        ("HTTP status", str(meta.get("http_status") or "")),
        ("Resolved IP", str(meta.get("resolved_ip") or "")),
        ("Viewport", f"{viewport.get('width')} × {viewport.get('height')}" if viewport else ""),
        ("Device", str(meta.get("device") or "")),
        ("Selector", str(meta.get("selector") or "")),
        ("Browser", f"{browser.get('name', '')} {browser.get('version', '')}".strip()),
        ("Operating system", f"{system.get('name', '')} {system.get('version', '')}".strip()),
        ("User agent", str(agent.get("string") or "")),
        ("Captured", str(meta.get("captured_at") or meta.get("captured_time") or "")),
        ("Created", when(snapshot.created_at)),
        ("Completed", when(snapshot.completed_at)),
        ("Expires", "never (legal hold)" if snapshot.legal_hold else when(snapshot.expires_at)),
    ]
    return [(label, value) for label, value in rows if value]


def share_rows(base_url: str, shares: list[Share]) -> list[dict[str, Any]]:
    """Share links as the pages list them: the row, its state, and the address to copy."""
    return [
        {"row": share, "state": share_state(share), "url": f"{base_url}/s/{share.id}"}
        for share in shares
    ]
