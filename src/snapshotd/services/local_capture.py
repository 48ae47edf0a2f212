"""Captures made on this machine, with no server and no database: `snapshotd capture`'s local mode.

Options are checked exactly as the API checks them before it queues anything, and the captures
run through the same capture stack a worker uses, sharing one guard and one browser.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from snapshotd.config import Settings
from snapshotd.engines.capture import CaptureResult
from snapshotd.engines.egress import EgressPolicy
from snapshotd.engines.stack import capture_stack
from snapshotd.errors import SnapshotdError
from snapshotd.services.capture_request import CaptureRequest, parse_request
from snapshotd.services.snapshots import check_options

# Called once per capture as it ends, with its index in the list asked for and its result, or why
# it failed.
Report = Callable[[int, CaptureResult | str], None]


def checked(settings: Settings, raw: Mapping[str, Any]) -> CaptureRequest:
    """One capture's options, parsed and checked as the API would; raises a SnapshotdError that
    says what is wrong."""
    options = parse_request(dict(raw))
    check_options(settings, EgressPolicy(settings.egress_allow), options)
    return options


def describe(error: BaseException) -> str:
    """An unexpected error in one line: its type and the first line of its message."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


async def capture_all(
    settings: Settings, captures: Sequence[CaptureRequest], *, slots: int, report: Report
) -> None:
    """Runs every capture, `slots` at once. One page's failure is reported and the rest go on;
    only a stack that cannot start (or stop) raises."""
    async with capture_stack(settings, slots=slots) as stack:

        async def one(index: int, options: CaptureRequest) -> None:
            try:
                result = await stack.engine.capture(options.options())
            except SnapshotdError as error:
                report(index, error.detail)
            except Exception as error:  # one page's failure must not end the batch
                report(index, describe(error))
            else:
                report(index, result)

        await asyncio.gather(*(one(index, each) for index, each in enumerate(captures)))


def run(
    settings: Settings, captures: Sequence[CaptureRequest], *, slots: int, report: Report
) -> None:
    """`capture_all` from synchronous code, in an event loop of its own."""
    asyncio.run(capture_all(settings, captures, slots=slots, report=report))
