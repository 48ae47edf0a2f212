"""The diff engine: two captures in, a count of changed pixels and a picture of them out."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from snapshotd.engines.diff import MAX_PIXELS, Difference, compare

RED = (255, 0, 0)


def noise(width: int, height: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def encode(pixels: np.ndarray | Image.Image, format: str = "PNG", **options: object) -> bytes:
    image = Image.fromarray(pixels) if isinstance(pixels, np.ndarray) else pixels
    out = io.BytesIO()
    image.save(out, format=format, **options)
    return out.getvalue()


def picture(difference: Difference) -> np.ndarray:
    assert difference.image.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(difference.image)) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def assert_painted(difference: Difference, changed: np.ndarray) -> None:
    """Exactly the changed pixels are red; every other pixel is washed out towards white."""
    drawn = picture(difference)
    assert drawn.shape[:2] == changed.shape
    red = (drawn == RED).all(axis=2)
    assert np.array_equal(red, changed)
    assert (drawn[~changed] >= 150).all()


# -- counting -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("format", "options"),
    [("PNG", {}), ("JPEG", {"quality": 80}), ("WEBP", {"lossless": True})],
    ids=["png", "jpeg", "webp"],
)
def test_identical_images_have_no_changes(format: str, options: dict[str, object]) -> None:
    data = encode(noise(100, 80), format, **options)
    difference = compare(data, data)
    assert (difference.changed_pixels, difference.total_pixels) == (0, 8000)
    assert difference.changed_percent == 0.0
    assert_painted(difference, np.zeros((80, 100), dtype=bool))


def test_a_changed_block_is_counted_exactly() -> None:
    before = noise(100, 100)
    after = before.copy()
    after[20:30, 40:50] ^= 0x80  # every channel moves by 128
    difference = compare(encode(before), encode(after))
    assert (difference.changed_pixels, difference.total_pixels) == (100, 10_000)
    assert difference.changed_percent == 1.0
    changed = np.zeros((100, 100), dtype=bool)
    changed[20:30, 40:50] = True
    assert_painted(difference, changed)


def test_one_channel_is_enough() -> None:
    before = np.full((10, 10, 3), 100, dtype=np.uint8)
    after = before.copy()
    after[3, 4, 2] = 200
    assert compare(encode(before), encode(after)).changed_pixels == 1


@pytest.mark.parametrize(("tolerance", "changed"), [(16, 0), (15, 100), (0, 100)])
def test_changes_within_the_tolerance_are_ignored(tolerance: int, changed: int) -> None:
    before = np.clip(noise(10, 10), 0, 239)
    after = before + 16  # every channel moves by exactly 16
    difference = compare(encode(before), encode(after), tolerance=tolerance)
    assert difference.changed_pixels == changed


def test_the_percentage_is_rounded_to_three_decimals() -> None:
    before = np.zeros((1, 7, 3), dtype=np.uint8)
    after = before.copy()
    after[0, 3] = 255
    assert compare(encode(before), encode(after)).changed_percent == 14.286


# -- different sizes ------------------------------------------------------------------------------


def test_a_wider_after_image_counts_the_new_area_as_changed() -> None:
    before = noise(100, 100)
    after = np.concatenate([before, noise(20, 100, seed=2)], axis=1)
    difference = compare(encode(before), encode(after))
    assert (difference.changed_pixels, difference.total_pixels) == (2000, 12_000)
    assert difference.changed_percent == 16.667
    changed = np.zeros((100, 120), dtype=bool)
    changed[:, 100:] = True
    assert_painted(difference, changed)


def test_a_shorter_after_image_counts_the_lost_area_as_changed() -> None:
    before = noise(50, 80)
    difference = compare(encode(before), encode(before[:60]))
    assert (difference.changed_pixels, difference.total_pixels) == (1000, 4000)
    changed = np.zeros((80, 50), dtype=bool)
    changed[60:] = True
    assert_painted(difference, changed)


def test_crossed_shapes_compare_on_the_union_canvas() -> None:
    wide, tall = np.zeros((50, 100, 3), dtype=np.uint8), np.zeros((100, 50, 3), dtype=np.uint8)
    difference = compare(encode(wide), encode(tall))
    # each image alone covers a 50×50 square; the corner neither covers is not a change
    assert (difference.changed_pixels, difference.total_pixels) == (5000, 10_000)
    changed = np.zeros((100, 100), dtype=bool)
    changed[:50, 50:] = changed[50:, :50] = True
    assert_painted(difference, changed)
    assert (picture(difference)[50:, 50:] == 255).all()  # the uncovered corner stays white


# -- the picture ----------------------------------------------------------------------------------


def test_unchanged_pixels_show_the_after_image_washed_out() -> None:
    before = noise(40, 30)
    difference = compare(encode(before), encode(before))
    expected = 0.35 * before.astype(float) + 0.65 * 255
    assert np.abs(picture(difference) - expected).max() <= 1


def test_transparency_is_flattened_onto_white() -> None:
    clear = np.zeros((10, 10, 4), dtype=np.uint8)  # transparent black
    white = np.full((10, 10, 3), 255, dtype=np.uint8)
    assert compare(encode(clear), encode(white)).changed_pixels == 0


# -- refusals -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def oversize() -> bytes:
    assert MAX_PIXELS < 8000 * 8000
    return encode(Image.new("1", (8000, 8000)))  # 64M pixels in a few kB


def test_an_oversize_image_is_refused(oversize: bytes) -> None:
    small = encode(noise(10, 10))
    assert len(oversize) < 1_000_000
    with pytest.raises(ValueError, match="before image is 8000 × 8000"):
        compare(oversize, small)
    with pytest.raises(ValueError, match="after image is 8000 × 8000"):
        compare(small, oversize)


@pytest.mark.parametrize("data", [b"", b"not an image", encode(noise(10, 10))[:60]])
def test_undecodable_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match="cannot be decoded"):
        compare(data, encode(noise(10, 10)))


@pytest.mark.parametrize("tolerance", [-1, 256])
def test_a_tolerance_outside_a_byte_is_refused(tolerance: int) -> None:
    data = encode(noise(10, 10))
    with pytest.raises(ValueError, match="tolerance"):
        compare(data, data, tolerance=tolerance)
