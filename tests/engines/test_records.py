"""The evidence record engine: a snapshot's facts, digests and image to a PDF, without a database."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone

import matplotlib
import numpy as np
import pytest
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import text_to_path
from PIL import Image

from snapshotd.engines import records
from snapshotd.engines.records import evidence_pdf

TITLE = "Evidence record: example.com pricing"
GENERATED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SHA_SCREENSHOT = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
SHA_HTML = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/131.0.0.0 Safari/537.36"
)
FACTS = [
    ("Page URL", "https://example.com/pricing?plan=team&currency=EUR"),
    ("Captured", "2026-01-02 03:04:05 UTC"),
    ("Viewport", "1280 × 800"),
    ("User agent", USER_AGENT),
    ("Final URL", "https://www.example.com/pricing?plan=team&currency=EUR"),
    ("HTTP status", "200"),
    ("Resolved IP", "93.184.215.14"),
    ("TLS subject", "CN=www.example.org,O=Internet Corporation for Assigned Names and Numbers"),
    ("TLS issuer", "CN=DigiCert Global G2 TLS RSA SHA256 2020 CA1,O=DigiCert Inc,C=US"),
]
ARTIFACTS = [
    ("screenshot", "image/png", 1_234_567, SHA_SCREENSHOT),
    ("html", "text/html; charset=utf-8", 51_234, SHA_HTML),
]


def screenshot(width: int, height: int, format: str = "PNG") -> bytes:
    """A page-like picture: light bands of text-like stripes, cheap to encode."""
    pixels = np.full((height, width, 3), 245, dtype=np.uint8)
    pixels[::24, : width * 3 // 4] = (40, 40, 90)
    pixels[:, :8] = (0, 114, 178)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=format)
    return out.getvalue()


def record(
    *,
    title: str = TITLE,
    facts: Sequence[tuple[str, str]] = FACTS,
    artifacts: Sequence[tuple[str, str, int, str]] = ARTIFACTS,
    image: bytes | None = None,
    generated_at: datetime = GENERATED,
) -> bytes:
    pdf = evidence_pdf(
        title=title, facts=facts, artifacts=artifacts, image=image, generated_at=generated_at
    )
    assert pdf.startswith(b"%PDF-")
    assert b"%%EOF" in pdf[-32:]
    return pdf


def page_count(pdf: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page[^s]", pdf))


def images(pdf: bytes) -> list[tuple[int, int]]:
    """The width and height of each embedded image, as stored."""
    found = re.findall(rb"/Subtype\s*/Image.*?/Width\s+(\d+)\s*/Height\s+(\d+)", pdf, re.S)
    return [(int(width), int(height)) for width, height in found]


# -- the document ---------------------------------------------------------------------------------


def test_the_document_info_names_the_snapshot() -> None:
    pdf = record()
    assert b"/Title (Evidence record: example.com pricing)" in pdf
    assert f"/Subject ({SHA_SCREENSHOT})".encode() in pdf
    assert b"/Creator (snapshotd)" in pdf
    assert b"/CreationDate (D:20260102030405Z)" in pdf


def test_without_artifacts_the_subject_is_empty() -> None:
    pdf = record(artifacts=[])
    assert b"/Subject ()" in pdf
    assert page_count(pdf) == 1


@pytest.mark.parametrize(
    "generated_at",
    [GENERATED.replace(tzinfo=None), GENERATED.astimezone(timezone(timedelta(hours=-5)))],
    ids=["naive", "new-york"],
)
def test_the_creation_date_is_in_utc(generated_at: datetime) -> None:
    assert b"/CreationDate (D:20260102030405Z)" in record(generated_at=generated_at)


def test_text_is_embedded_as_truetype_not_type3() -> None:
    pdf = record()
    assert b"/FontFile2" in pdf  # TrueType programs: real, selectable text
    assert re.search(rb"/Subtype\s*/Type3", pdf) is None


def test_rc_params_are_left_as_they_were() -> None:
    before = dict(matplotlib.rcParams)
    record(image=screenshot(200, 100))
    assert dict(matplotlib.rcParams) == before


# -- pages ----------------------------------------------------------------------------------------


def test_without_an_image_the_record_is_one_page() -> None:
    pdf = record()
    assert page_count(pdf) == 1
    assert images(pdf) == []


@pytest.mark.parametrize("format", ["PNG", "JPEG"])
def test_a_small_image_takes_one_more_page(format: str) -> None:
    pdf = record(image=screenshot(1280, 800, format))
    assert page_count(pdf) == 2
    assert images(pdf) == [(1280, 800)]  # stored at its own resolution, not resampled


def test_a_full_page_screenshot_is_split_into_page_height_slices() -> None:
    pdf = record(image=screenshot(1280, 12_000))
    slices = images(pdf)
    assert page_count(pdf) == 1 + len(slices) > 2
    assert {width for width, _ in slices} == {1280}
    assert sum(height for _, height in slices) == 12_000  # every row once, in order of pages
    assert len({height for _, height in slices[:-1]}) == 1


def test_a_transparent_image_is_accepted() -> None:
    out = io.BytesIO()
    Image.new("RGBA", (300, 200), (255, 0, 0, 0)).save(out, format="PNG")
    assert page_count(record(image=out.getvalue())) == 2


@pytest.mark.parametrize("image", [b"", b"GIF89a not a png", screenshot(50, 50)[:80]])
def test_an_undecodable_image_is_refused(image: bytes) -> None:
    with pytest.raises(ValueError, match="cannot be decoded"):
        evidence_pdf(title="t", facts=[], artifacts=[], image=image, generated_at=GENERATED)


# -- long and awkward values ----------------------------------------------------------------------


def test_long_values_wrap_onto_page_one() -> None:
    url = "https://example.com/" + "/".join(f"segment{i}" for i in range(100)) + "?q=1&r=2"
    facts = [*FACTS, ("Page URL", url), ("Redirect", "x" * 600)]
    assert page_count(record(facts=facts)) == 1


def test_values_too_long_for_one_page_continue_on_the_next() -> None:
    url = "https://example.com/?q=" + "a" * 30_000
    assert page_count(record(facts=[*FACTS, ("Page URL", url)])) > 1


def test_dollar_signs_are_text_not_mathtext() -> None:
    facts = [("Page URL", "https://example.com/?price=$5&note=$\\frac{"), ("Title", "$$")]
    assert page_count(record(facts=facts, title="Costs $1 or $2")) == 1


@pytest.mark.parametrize(
    ("text", "font"),
    [
        (
            "https://example.com/" + "/".join(f"path-{i}" for i in range(80)) + "?a=1&b=2",
            "DejaVu Sans",
        ),
        (USER_AGENT * 3, "DejaVu Sans"),
        ("W" * 400, "DejaVu Sans"),
        (SHA_SCREENSHOT * 3, "DejaVu Sans Mono"),
        ("first line\n\nthird line", "DejaVu Sans"),
    ],
    ids=["url", "user-agent", "one-run", "digests", "newlines"],
)
def test_wrapped_lines_fit_and_keep_every_character(text: str, font: str) -> None:
    prop = FontProperties(family=font, size=9)
    lines = records._wrap(text, 300, prop)
    for line in lines:
        assert text_to_path.get_text_width_height_descent(line, prop, False)[0] <= 300
    assert "".join(lines).replace(" ", "") == text.replace(" ", "").replace("\n", "")
    assert len(lines) >= text.count("\n") + 1


# -- repeatability and threads --------------------------------------------------------------------


def test_the_same_input_gives_the_same_pages() -> None:
    image = screenshot(1280, 3000)
    first, second = record(image=image), record(image=image)
    assert page_count(first) == page_count(second) == 3
    assert images(first) == images(second)


def test_records_can_be_made_from_several_threads() -> None:
    image = screenshot(1280, 4000)

    def make(number: int) -> bytes:
        return record(title=f"Record number {number}", image=image)

    with ThreadPoolExecutor(max_workers=4) as pool:
        pdfs = list(pool.map(make, range(4)))
    for number, pdf in enumerate(pdfs):
        assert f"/Title (Record number {number})".encode() in pdf
        assert page_count(pdf) == page_count(pdfs[0]) > 2
    assert matplotlib.rcParams["pdf.fonttype"] == matplotlib.rcParamsDefault["pdf.fonttype"]
