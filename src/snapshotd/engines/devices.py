"""Playwright's device descriptors ("iPhone 13", "Pixel 7", …), read once per process."""

from __future__ import annotations

import functools
from typing import Any

from playwright.sync_api import sync_playwright


@functools.cache
def descriptors() -> dict[str, dict[str, Any]]:
    """Blocking (starts Playwright's driver briefly): call it from a thread, not an event loop."""
    with sync_playwright() as playwright:
        return {name: dict(spec) for name, spec in playwright.devices.items()}


def context_options(device: str) -> dict[str, Any]:
    """Browser-context keyword arguments that emulate `device`; KeyError if unknown."""
    spec = descriptors()[device]
    return {key: value for key, value in spec.items() if key != "default_browser_type"}
