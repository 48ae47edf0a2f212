"""Evidence records: one snapshot's facts, artifact digests and image as a PDF for an auditor.

Page 1 (A4) holds the title, the facts and the artifacts, each SHA-256 in full in a monospace
font; the image follows, scaled to the page width and cut into page-height slices drawn unsampled
(the PDF keeps the screenshot's own pixels). Text is placed line by line from a cursor: a long
value wraps, measured in the font that draws it, and a full page continues on the next one rather
than running off. Text is never parsed as mathtext, and fonts are embedded as TrueType
(`pdf.fonttype` 42), so the PDF holds real, selectable text. matplotlib reads that setting from
its global rcParams while drawing and again on close, so each record is made in `rc_context`
under a module lock: one record at a time, and no setting outlives the call.
"""

from __future__ import annotations

import io
import itertools
import math
import re
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import matplotlib
import numpy as np
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.textpath import text_to_path
from PIL import Image

MAX_IMAGE_PIXELS = 50_000_000
PAGE_WIDTH, PAGE_HEIGHT = 595.28, 841.89  # A4, in points
MARGIN = 50.0
CONTENT_WIDTH = PAGE_WIDTH - 2 * MARGIN
_LABEL_WIDTH = 110.0  # the first column; values and digests start after it
_IMAGE_TOP = PAGE_HEIGHT - MARGIN - 34  # below an image page's heading
_FORMATS = ("PNG", "JPEG")
_SANS, _MONO = "DejaVu Sans", "DejaVu Sans Mono"
Style = tuple[FontProperties, str]  # a font and a colour
_TITLE: Style = (FontProperties(family=_SANS, size=16, weight="bold"), "black")
_HEADING: Style = (FontProperties(family=_SANS, size=12, weight="bold"), "black")
_LABEL: Style = (FontProperties(family=_SANS, size=9), "#555555")
_VALUE: Style = (FontProperties(family=_SANS, size=9), "black")
_ROLE: Style = (FontProperties(family=_SANS, size=9, weight="bold"), "black")
_DIGEST: Style = (FontProperties(family=_MONO, size=8), "black")
_SMALL: Style = (FontProperties(family=_SANS, size=7.5), "#555555")
_LOCK = threading.Lock()


def evidence_pdf(
    *,
    title: str,
    facts: Sequence[tuple[str, str]],
    artifacts: Sequence[tuple[str, str, int, str]],
    image: bytes | None,
    generated_at: datetime,
) -> bytes:
    """The record as PDF bytes. `artifacts` are (role, media type, size in bytes, SHA-256 hex);
    `image` is PNG or JPEG bytes, or None for no image pages. A naive `generated_at` is UTC.
    ValueError when the image cannot be decoded or has more than MAX_IMAGE_PIXELS pixels."""
    moment = generated_at.replace(tzinfo=UTC) if generated_at.tzinfo is None else generated_at
    moment = moment.astimezone(UTC)
    picture = None if image is None else _decode(image)
    stamp = f"Generated {moment:%Y-%m-%d %H:%M:%S} UTC"
    metadata = {
        "Title": title,
        "Subject": artifacts[0][3] if artifacts else "",
        "Creator": "snapshotd",
        "CreationDate": moment,
    }
    out = io.BytesIO()
    with (
        _LOCK,
        matplotlib.rc_context({"pdf.fonttype": 42}),
        PdfPages(out, metadata=metadata) as pdf,
    ):
        pages = _text_pages(title, stamp, facts, artifacts)
        parts, images = (0, iter(())) if picture is None else _image_pages(picture)
        for number, page in enumerate(itertools.chain(pages, images), 1):
            _footer(page, stamp, number, len(pages) + parts)
            pdf.savefig(page)
    return out.getvalue()


class _Sheet:
    """Text pages filled from the top; a line that does not fit above the margin starts a page."""

    def __init__(self) -> None:
        self.pages: list[Figure] = []
        self.y = 0.0
        self.new_page()

    def new_page(self) -> None:
        self.pages.append(_page())
        self.y = PAGE_HEIGHT - MARGIN

    def need(self, height: float) -> None:
        if self.y - height < MARGIN:
            self.new_page()

    def line(self, height: float, text: str, style: Style, x: float = 0.0) -> None:
        self.need(height)
        _text(self.pages[-1], MARGIN + x, self.y, text, style)
        self.y -= height

    def pair(self, label: str, label_style: Style, value: str, value_style: Style) -> None:
        """A label and its value side by side, each wrapped to its column. A pair taller than
        the room left continues on the next page."""
        labels = _wrap(label, _LABEL_WIDTH - 10, label_style[0])
        values = _wrap(value, CONTENT_WIDTH - _LABEL_WIDTH, value_style[0])
        for i in range(max(len(labels), len(values))):
            self.need(12)
            if i < len(labels):
                _text(self.pages[-1], MARGIN, self.y, labels[i], label_style)
            self.line(12, values[i] if i < len(values) else "", value_style, x=_LABEL_WIDTH)

    def heading(self, text: str) -> None:
        self.need(40)  # a heading keeps its first row with it
        self.y -= 10
        self.line(18, text, _HEADING)
        xs = (MARGIN / PAGE_WIDTH, (PAGE_WIDTH - MARGIN) / PAGE_WIDTH)
        ys = ((self.y + 3) / PAGE_HEIGHT,) * 2
        self.pages[-1].add_artist(Line2D(xs, ys, color="#bbbbbb", lw=0.6))
        self.y -= 4


def _text_pages(
    title: str,
    stamp: str,
    facts: Sequence[tuple[str, str]],
    artifacts: Sequence[tuple[str, str, int, str]],
) -> list[Figure]:
    sheet = _Sheet()
    for line in _wrap(title, CONTENT_WIDTH, _TITLE[0]):
        sheet.line(20, line, _TITLE)
    sheet.line(16, stamp, _LABEL)
    sheet.heading("Facts")
    for label, value in facts:
        sheet.pair(label, _LABEL, value, _VALUE)
        sheet.y -= 3
    if not facts:
        sheet.line(12, "None", _LABEL)
    sheet.heading("Artifacts")
    for role, media_type, size, sha256 in artifacts:
        sheet.pair(role, _ROLE, f"{media_type}, {size:,} bytes", _VALUE)
        sheet.pair("SHA-256", _LABEL, sha256, _DIGEST)
        sheet.y -= 5
    if not artifacts:
        sheet.line(12, "None", _LABEL)
    return sheet.pages


def _image_pages(picture: Image.Image) -> tuple[int, Iterator[Figure]]:
    """How many pages the image takes, and those pages, each made only when it is saved."""
    rows = max(1, int((_IMAGE_TOP - MARGIN) * picture.width / CONTENT_WIDTH))
    parts = math.ceil(picture.height / rows)
    return parts, (_image_page(picture, i * rows, rows, i + 1, parts) for i in range(parts))


def _image_page(picture: Image.Image, top: int, rows: int, part: int, parts: int) -> Figure:
    page = _page()
    bottom = min(picture.height, top + rows)
    _text(page, MARGIN, PAGE_HEIGHT - MARGIN, f"Image, part {part} of {parts}", _HEADING)
    where = f"{picture.width} × {picture.height} px, rows {top + 1}–{bottom}"
    _text(page, MARGIN, PAGE_HEIGHT - MARGIN - 18, where, _SMALL)
    height = (bottom - top) * CONTENT_WIDTH / picture.width
    box = (MARGIN / PAGE_WIDTH, (_IMAGE_TOP - height) / PAGE_HEIGHT)
    axes = page.add_axes((*box, CONTENT_WIDTH / PAGE_WIDTH, height / PAGE_HEIGHT))
    pixels = np.asarray(picture.crop((0, top, picture.width, bottom)))
    axes.imshow(pixels, interpolation="none", aspect="auto")  # unsampled: the original pixels
    axes.set_axis_off()
    return page


def _footer(page: Figure, stamp: str, number: int, total: int) -> None:
    _text(page, MARGIN, MARGIN - 18, f"snapshotd evidence record. {stamp}", _SMALL)
    right = PAGE_WIDTH - MARGIN
    _text(page, right, MARGIN - 18, f"Page {number} of {total}", _SMALL, ha="right")


def _page() -> Figure:
    return Figure(figsize=(PAGE_WIDTH / 72, PAGE_HEIGHT / 72), dpi=72)


def _text(page: Figure, x: float, y: float, text: str, style: Style, ha: str = "left") -> None:
    """Text hanging from (x, y) points from the page's bottom-left corner; never mathtext."""
    font, color = style
    x, y = x / PAGE_WIDTH, y / PAGE_HEIGHT
    page.text(x, y, text, fontproperties=font, color=color, ha=ha, va="top", parse_math=False)


def _wrap(text: str, width: float, font: FontProperties) -> list[str]:
    """Lines no wider than `width` points. Breaks after spaces and URL separators when it can,
    inside a run of characters when it must. Every character is kept except spaces at a break."""
    advances: dict[str, float] = {}

    def advance(char: str) -> float:
        if char not in advances:
            advances[char] = text_to_path.get_text_width_height_descent(char, font, False)[0]
        return advances[char]

    lines = []
    for paragraph in text.split("\n"):
        line, used = "", 0.0
        for piece in re.findall(r"[^\s/?&=,;-]*[\s/?&=,;-]*", paragraph):
            if line and used + sum(map(advance, piece.rstrip())) > width:
                lines.append(line.rstrip())
                line, used = "", 0.0
            for char in piece:
                step = advance(char)
                if line and used + step > width:
                    lines.append(line.rstrip())
                    line, used = "", 0.0
                if line or not char.isspace():
                    line, used = line + char, used + step
        lines.append(line.rstrip())
    return lines


def _decode(data: bytes) -> Image.Image:
    """The image as opaque RGB (transparency over white)."""
    try:
        with Image.open(io.BytesIO(data), formats=_FORMATS) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise ValueError(f"the image has more than {MAX_IMAGE_PIXELS:,} pixels")
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                rgba = image.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                return Image.alpha_composite(white, rgba).convert("RGB")
            return image.convert("RGB")
    except (OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(f"the image cannot be decoded as PNG or JPEG: {exc}") from exc
