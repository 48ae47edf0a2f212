"""The web console at /console: server-rendered pages over the same services as the API.

Each page module has its own router, with paths relative to /console; they are joined here, the
catch-all `assets` router last.
"""

from __future__ import annotations

from fastapi import APIRouter

from snapshotd.http.console import (
    actions,
    assets,
    capture,
    charts,
    locations,
    signin,
    snapshots,
    tests_pages,
)
from snapshotd.http.console.session import PREFIX

router = APIRouter(tags=["console"])
for part in (signin, snapshots, actions, capture, locations, charts, tests_pages):
    router.include_router(part.router, prefix=PREFIX)
router.include_router(assets.router, prefix=PREFIX)  # last: it answers every address left

__all__ = ["router"]
