"""`snapshotd capture`: one URL or many, with a local browser or through a snapshotd server.

Locally, `services.local_capture` checks each capture as the API would and runs them all through
one capture stack (one egress guard, one browser with `--concurrency` contexts).
With --server (or SNAPSHOTD_SERVER) each URL is a snapshot made on that server through the SDK
(create, wait, download), and the summary names the snapshot, ready for `snapshotd share`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from snapshotd.cli import options
from snapshotd.cli.batch import FORMATS, InputError, Plan, Row, plan, read_rows
from snapshotd.cli.common import (
    USAGE,
    ServerOption,
    TokenOption,
    connected,
    fail,
    settings_from_env,
    show_rows,
)
from snapshotd.errors import SnapshotdError

if TYPE_CHECKING:
    from snapshotd.client import Snapshot, SnapshotClient
    from snapshotd.config import Settings

# A remote capture may wait this long past its own timeout for a worker to pick it up.
QUEUE_PATIENCE = 300.0
RATE_LIMIT_RETRIES = 5


@dataclass
class Outcome:
    plan: Plan
    size: int | None = None
    error: str | None = None
    snapshot_id: str | None = None


Report = Callable[[Outcome], None]


def _write(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def _written(each: Plan, data: bytes, snapshot_id: str | None = None) -> Outcome:
    assert each.target is not None
    try:
        _write(each.target, data)
    except OSError as error:
        reason = f"cannot write {each.target}: {error.strerror or error}"
        return Outcome(each, error=reason, snapshot_id=snapshot_id)
    return Outcome(each, size=len(data), snapshot_id=snapshot_id)


def _validate(plans: list[Plan], settings: Settings | None) -> None:
    """Parses each capture's options; locally (given `settings`) also checks them as the server
    does before it queues anything (the server checks remote ones itself)."""
    from snapshotd.services import local_capture
    from snapshotd.services.capture_request import parse_request

    for each in plans:
        if each.error:
            continue
        if not each.url:
            each.error = "no URL"
            continue
        try:
            if settings is None:
                each.options = parse_request(each.raw)
            else:
                each.options = local_capture.checked(settings, each.raw)
        except SnapshotdError as error:
            each.error = error.detail


def _run_local(plans: list[Plan], settings: Settings, slots: int, report: Report) -> None:
    from snapshotd.engines.capture import CaptureResult
    from snapshotd.services import local_capture

    def done(index: int, result: CaptureResult | str) -> None:
        each = plans[index]
        if isinstance(result, str):
            report(Outcome(each, error=result))
            return
        outcome = _written(each, result.artifacts[0].data)
        if result.failure and outcome.error is None:
            outcome.error = f"{result.failure} (written to {each.target})"
        report(outcome)

    try:
        local_capture.run(settings, [each.options for each in plans], slots=slots, report=done)
    except SnapshotdError as error:
        raise fail(error.detail) from None
    except Exception as error:  # the browser or the guard did not start
        reason = local_capture.describe(error)
        raise fail(f"cannot start the local browser: {reason}") from None


def _create(client: SnapshotClient, each: Plan) -> Snapshot:
    from snapshotd.client import RateLimitedError

    fields = each.options.model_dump(include=set(each.raw) - {"url"}, exclude_none=True)
    retries = 0
    while True:
        try:
            return client.create(each.options.url, **fields)
        except RateLimitedError as error:
            retries += 1
            if retries > RATE_LIMIT_RETRIES:
                raise
            time.sleep(min(error.retry_after or 1.0, 30.0))


def _remote_one(client: SnapshotClient, each: Plan) -> Outcome:
    import httpx

    from snapshotd.client import ClientError

    snapshot_id = None
    try:
        snapshot = _create(client, each)
        snapshot_id = snapshot.id
        patience = (each.options.timeout_ms or 60_000) / 1000 + QUEUE_PATIENCE
        done = client.wait(snapshot, timeout=patience)
        data = client.download(done, "pdf" if each.options.format == "pdf" else "image")
    except ClientError as error:
        return Outcome(each, error=str(error), snapshot_id=snapshot_id)
    except httpx.HTTPError as error:
        return Outcome(each, error=f"cannot reach the server: {error}", snapshot_id=snapshot_id)
    return _written(each, data, snapshot_id)


def _run_remote(client: SnapshotClient, plans: list[Plan], workers: int, report: Report) -> None:
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="capture") as pool:
        for future in as_completed([pool.submit(_remote_one, client, each) for each in plans]):
            report(future.result())


class Progress:
    """A bar on a terminal's stderr; one line per finished capture when stderr is a log."""

    def __init__(self, total: int, quiet: bool) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar

        self.total, self.done, self.quiet = total, 0, quiet
        console = Console(stderr=True)
        self.bar = (
            Bar(
                TextColumn("capturing"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            )
            if console.is_terminal and not quiet
            else None
        )
        self.task = self.bar.add_task("capture", total=total) if self.bar else None

    def __enter__(self) -> Progress:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def __call__(self, outcome: Outcome) -> None:
        self.done += 1
        if self.bar is not None and self.task is not None:
            self.bar.advance(self.task)
        elif not self.quiet:
            state = "ok" if outcome.error is None else "failed"
            typer.echo(f"[{self.done}/{self.total}] {state} {outcome.plan.url}", err=True)


def _summary(outcomes: Sequence[Outcome], remote: bool) -> None:
    headers = ["url", "status", "file", "bytes / reason"] + (["snapshot"] if remote else [])
    rows = []
    for each in outcomes:
        target = each.plan.target
        row = [
            each.plan.url,
            "failed" if each.error else "ok",
            str(target) if target and not each.error else "",
            each.error or str(each.size),
        ]
        rows.append(row + ([each.snapshot_id or ""] if remote else []))
    show_rows(headers, rows)


def capture(
    urls: Annotated[list[str] | None, typer.Argument(metavar="URL", show_default=False)] = None,
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from",
            metavar="FILE",
            help="URLs one a line, or CSV with a url column and per-row options (- for stdin).",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="File to write (one capture).", show_default=False),
    ] = None,
    out_dir: Annotated[
        Path,
        typer.Option("-d", "--out-dir", help="Folder for the files, named after each URL."),
    ] = Path("."),
    width: options.Width = 1280,
    height: options.Height = 800,
    full_page: options.FullPage = False,
    selector: options.Selector = None,
    device: options.Device = None,
    format: Annotated[
        str | None, typer.Option(help="png, jpeg, webp or pdf (default: from -o, else png).")
    ] = None,
    wait_until: options.WaitUntil = "load",
    delay_ms: options.DelayMs = 0,
    timeout_ms: options.TimeoutMs = None,
    block_ads: options.BlockAds = False,
    block_trackers: options.BlockTrackers = False,
    consent: options.Consent = None,
    scroll_lazy: options.ScrollLazy = None,
    freeze_animations: options.FreezeAnimations = False,
    reduced_motion: options.ReducedMotion = False,
    forced_colors: options.ForcedColors = False,
    media: options.Media = None,
    color_scheme: options.ColorScheme = None,
    timezone: options.Timezone = None,
    locale: options.Locale = None,
    geolocation: options.Geolocation = None,
    fail_on_status: options.FailOnStatus = None,
    user_agent: options.UserAgent = None,
    concurrency: Annotated[int, typer.Option(min=1, max=16, help="Captures running at once.")] = 2,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Capture pages to files, with a local browser or, given --server, on a snapshotd server.
    Exits 1 if any capture failed."""
    rows = [Row(url=url) for url in urls or ()]
    if from_file is not None:
        rows += _read(from_file)
    if not rows:
        raise fail("nothing to capture: give URLs or --from FILE", USAGE)
    if server and not token:
        raise fail("no API token given: set SNAPSHOTD_TOKEN or pass --token", USAGE)
    if output is not None and len(rows) > 1:
        raise fail(f"-o names one file; for {len(rows)} captures use --out-dir DIR", USAGE)
    defaults: dict[str, Any] = {
        "width": width,
        "height": height,
        "full_page": full_page,
        "selector": selector,
        "device": device,
        "format": format or (FORMATS.get(output.suffix.lower()) if output else None),
        "wait_until": wait_until,
        "delay_ms": delay_ms,
        "timeout_ms": timeout_ms,
        "block_ads": block_ads,
        "block_trackers": block_trackers,
        "freeze_animations": freeze_animations,
        "reduced_motion": reduced_motion,
        "forced_colors": forced_colors,
    }
    asked = {
        "consent": consent,
        "scroll_lazy": scroll_lazy,
        "media": media,
        "color_scheme": color_scheme,
        "timezone": timezone,
        "locale": locale,
        "geolocation": geolocation,
        "fail_on_status": fail_on_status,
        "user_agent": user_agent,
    }
    defaults.update({name: value for name, value in asked.items() if value is not None})
    settings = None if server else settings_from_env()
    if settings is not None:
        defaults["evidence"] = False  # only the image is kept: no HTML or MHTML to make
    plans = plan(rows, defaults, out_dir=out_dir, output=output)
    _validate(plans, settings)
    outcomes = {id(each): Outcome(each, error=each.error) for each in plans}
    runnable = [each for each in plans if each.error is None]
    lone = output is not None
    with Progress(len(plans), quiet or lone) as progress:
        for each in plans:
            if each.error:
                progress(outcomes[id(each)])

        def report(outcome: Outcome) -> None:
            outcomes[id(outcome.plan)] = outcome
            progress(outcome)

        if runnable and settings is not None:
            _run_local(runnable, settings, concurrency, report)
        elif runnable:
            with connected(server, token) as client:
                _run_remote(client, runnable, concurrency, report)
    results = [outcomes[id(each)] for each in plans]
    if lone:
        [result] = results
        if result.error:
            raise fail(result.error)
        kept = f", snapshot {result.snapshot_id}" if result.snapshot_id else ""
        typer.echo(f"wrote {output} ({result.size} bytes){kept}", err=True)
        return
    _summary(results, remote=bool(server))
    if any(result.error for result in results):
        raise typer.Exit(1)


def _read(source: Path) -> list[Row]:
    try:
        text = sys.stdin.read() if str(source) == "-" else source.read_text(encoding="utf-8-sig")
        return read_rows(text, csv_file=source.suffix.lower() == ".csv")
    except OSError as error:
        raise fail(f"cannot read {source}: {error.strerror or error}", USAGE) from None
    except (InputError, UnicodeDecodeError) as error:
        raise fail(f"{source}: {error}", USAGE) from None


def register(app: typer.Typer) -> None:
    app.command("capture")(capture)
