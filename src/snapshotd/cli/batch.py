"""What `snapshotd capture` is asked to do: the URLs, each one's options and the file it goes to.

Input files hold one URL a line (blank lines and `#` comments skipped), or are CSV with a header
row: a `url` column plus optional per-row columns overriding the command's options. An empty cell
keeps the command's value.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any
from urllib.parse import urlsplit

from snapshotd.services.capture_request import PAGE_OPTIONS

FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp", ".pdf": "pdf"}
EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp", "pdf": ".pdf"}
COLUMNS = (
    "width",
    "height",
    "full_page",
    "selector",
    "device",
    "format",
    "wait_until",
    "delay_ms",
    "timeout_ms",
    # The real-world page options that fit in one cell (flags as true/false, 1/0, yes/no).
    *(name for name in PAGE_OPTIONS if name != "hide_selectors"),
)
NAME_LENGTH = 80


class InputError(ValueError):
    """The input file cannot be read as a list of captures."""


@dataclass
class Row:
    """One capture as asked: the URL, its own options (CSV cells) and its own file name."""

    url: str
    options: dict[str, str] = field(default_factory=dict)
    output: str | None = None


@dataclass
class Plan:
    """One capture as it will run: validated options and a target file, or why it cannot run."""

    url: str
    raw: dict[str, Any]
    target: Path | None = None
    options: Any = None  # CaptureRequest once validated
    error: str | None = None


def _is_header(cells: list[str]) -> bool:
    names = [cell.strip().lower() for cell in cells]
    return "url" in names and not any("://" in cell for cell in cells)


def read_rows(text: str, *, csv_file: bool) -> list[Row]:
    """The captures an input file asks for, in file order."""
    lines = text.splitlines()
    first = next((line for line in lines if line.strip() and not line.startswith("#")), "")
    if csv_file or _is_header(next(csv.reader([first]), [])):
        return _csv_rows(text)
    return [Row(url=line.strip()) for line in lines if line.strip() and not _comment(line)]


def _comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def _csv_rows(text: str) -> list[Row]:
    reader = csv.reader(line for line in io.StringIO(text) if line.strip() and not _comment(line))
    header = [cell.strip().lower() for cell in next(reader, [])]
    if "url" not in header:
        raise InputError("the CSV header has no url column")
    unknown = sorted(set(header) - {"url", "output", *COLUMNS})
    if unknown:
        known = ", ".join(("url", *COLUMNS, "output"))
        raise InputError(f"unknown CSV column {unknown[0]!r} (known: {known})")
    rows = []
    for number, cells in enumerate(reader, start=2):
        if len(cells) > len(header):
            raise InputError(f"CSV line {number} has more cells than the header")
        values = {name: cell.strip() for name, cell in zip(header, cells, strict=False) if cell}
        if not any(values.values()):
            continue
        rows.append(
            Row(
                url=values.pop("url", ""),
                output=values.pop("output", None) or None,
                options={name: value for name, value in values.items() if value},
            )
        )
    return rows


def slug(url: str) -> str:
    """A file name stem from a URL: host, port, path and query, with only [a-z0-9._-] kept."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "capture"
    text = (parts.hostname or "") + (f"-{port}" if port else "") + parts.path
    if parts.query:
        text += "-" + parts.query
    stem = re.sub(r"[^a-z0-9._]+", "-", text.lower())
    # Runs of dots and dashes collapse, so no name is hidden or walks up with "..".
    stem = re.sub(r"[-.]{2,}", "-", stem).strip("-.")
    return stem[:NAME_LENGTH].rstrip("-.") or "capture"


def _format(row: Row, default: str | None) -> str:
    if row.options.get("format"):
        return row.options["format"].lower()
    if row.output and PurePath(row.output).suffix.lower() in FORMATS:
        return FORMATS[PurePath(row.output).suffix.lower()]
    return default or "png"


def _explicit_target(out_dir: Path, output: str) -> Path | None:
    """A CSV `output` cell as a path inside the output folder; None if it would leave it."""
    path = PurePath(output)
    if path.is_absolute() or ".." in path.parts or not path.name:
        return None
    return out_dir / path


def plan(
    rows: Iterable[Row],
    defaults: Mapping[str, Any],
    *,
    out_dir: Path,
    output: Path | None = None,
) -> list[Plan]:
    """Each row's options (its own cells over `defaults`) and a file for it: `output` for a lone
    capture, else its CSV `output` cell or a name from its URL, unique within the batch."""
    rows = list(rows)
    plans = []
    for row in rows:
        raw = {**defaults, **row.options, "url": row.url}
        raw["format"] = _format(row, defaults.get("format"))
        plans.append(Plan(url=row.url, raw=raw))
    if output is not None:
        plans[0].target = output
        return plans
    taken: set[str] = set()
    for row, each in zip(rows, plans, strict=True):
        if row.output is None:
            continue
        target = _explicit_target(out_dir, row.output)
        if target is None:
            each.error = f"output {row.output!r} must be a relative path inside {out_dir}"
        elif str(target).lower() in taken:
            each.error = f"output {row.output!r} is also another row's file"
        else:
            taken.add(str(target).lower())
            each.target = target
    for row, each in zip(rows, plans, strict=True):
        if row.output is not None:
            continue
        stem, extension = slug(row.url), EXTENSIONS.get(each.raw["format"], ".png")
        target = out_dir / f"{stem}{extension}"
        counter = 1
        while str(target).lower() in taken:
            counter += 1
            target = out_dir / f"{stem}-{counter}{extension}"
        taken.add(str(target).lower())
        each.target = target
    return plans
