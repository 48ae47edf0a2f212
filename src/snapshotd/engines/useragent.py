"""Parses a user-agent string into the browser and OS facts a capture records."""

from __future__ import annotations

from typing import Any

from ua_parser import parse


def _version(*parts: str | None) -> str:
    return ".".join(part for part in parts if part)


def describe_user_agent(ua: str) -> dict[str, Any]:
    result = parse(ua)
    browser = result.user_agent
    os = result.os
    device = result.device
    return {
        "string": ua,
        "browser": {
            "name": browser.family if browser else "Other",
            "version": _version(browser.major, browser.minor, browser.patch) if browser else "",
        },
        "os": {
            "name": os.family if os else "Other",
            "version": _version(os.major, os.minor, os.patch) if os else "",
        },
        "device": device.family if device else "Other",
    }
