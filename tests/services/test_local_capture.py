"""`snapshotd capture`'s local mode checks options exactly as the API does, and one page's failure
is reported for that page while the others are captured."""

from __future__ import annotations

import asyncio

import pytest

from snapshotd.config import Settings
from snapshotd.engines.capture import CaptureResult
from snapshotd.errors import SnapshotdError
from snapshotd.services import local_capture
from tests.pages import PageServer


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"url": "http://127.0.0.1/", "width": 5000}, "width must be at most 4096"),
        ({"url": "http://127.0.0.1/", "device": "Toaster 3000"}, "unknown device"),
        ({"url": "http://127.0.0.1/", "format": "pdf", "selector": "p"}, "selector cannot"),
        ({"url": "http://127.0.0.2/"}, "loopback address"),
        ({"url": "file:///etc/passwd"}, "use http or https"),
        ({"url": "http://127.0.0.1/", "colour": "red"}, "colour"),
    ],
)
def test_options_are_checked_as_the_api_checks_them(
    settings: Settings, raw: dict[str, object], reason: str
) -> None:
    with pytest.raises(SnapshotdError) as refused:
        local_capture.checked(settings, raw)
    assert reason in refused.value.detail


def test_each_capture_is_reported_by_its_index(settings: Settings, pages: PageServer) -> None:
    captures = [
        local_capture.checked(settings, {"url": pages.url + "/", "evidence": False}),
        local_capture.checked(settings, {"url": pages.url + "/box", "selector": "#absent"}),
    ]
    reported: dict[int, CaptureResult | str] = {}

    def report(index: int, outcome: CaptureResult | str) -> None:
        reported[index] = outcome

    asyncio.run(local_capture.capture_all(settings, captures, slots=2, report=report))
    assert isinstance(reported[0], CaptureResult)
    assert reported[0].artifacts[0].media_type == "image/png"
    assert isinstance(reported[1], str) and "#absent" in reported[1]
