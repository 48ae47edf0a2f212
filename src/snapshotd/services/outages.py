"""What the front ends ask about a failure that reached them: is it an outage of the database,
the blob store or the disk (answered 503 with Retry-After), a value the database refused (400),
or a bug. The store knows its drivers' errors; the front ends reach that knowledge here."""

from __future__ import annotations

from snapshotd.store.outages import as_outage, outage_classes, refused_value

__all__ = ["as_outage", "outage_classes", "refused_value"]
