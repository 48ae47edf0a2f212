"""Moments as snapshotd writes them everywhere: ISO 8601 in UTC with `Z` (DESIGN's rule for the
wire, manifests, webhooks and metadata alike)."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(moment: datetime | None) -> str | None:
    """`moment` (aware, UTC) as ISO 8601 with `Z`, to the microsecond it holds; None stays None."""
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def iso_seconds(moment: datetime) -> str:
    """ISO 8601 in UTC with `Z`, to the second, for APIs that document that form."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
