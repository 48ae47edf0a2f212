"""Capture differences: how much a page changed since the previous capture, and where.

Both images are decoded by Pillow (PNG, JPEG or WebP; transparency over white) and compared with
numpy on the union canvas, as wide as the wider and as tall as the taller. A pixel changed when
any RGB channel moved by more than `tolerance` (which absorbs anti-aliasing and JPEG noise), or
when only one of the two images covers it; a corner neither covers (a wide image against a tall
one) is not a change. The picture is the `after` image washed 65 % towards white, every changed
pixel pure red, so a change stands out whatever the page's own colours. Channels are compared one
at a time in uint8, which keeps a full-page screenshot's working memory to a few masks, and the
PNG is encoded at a low compression level, which is most of the speed.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

MAX_PIXELS = 50_000_000
_FORMATS = ("PNG", "JPEG", "WEBP")
_RED = (255, 0, 0)
# v -> 0.35 v + 0.65 × 255: the darkest unchanged pixel is drawn at 165.
_WASH = ((np.arange(256) * 7 + 255 * 13) // 20).astype(np.uint8)


@dataclass(frozen=True)
class Difference:
    changed_pixels: int
    total_pixels: int
    changed_percent: float  # 100 × changed / total, to 3 decimals
    image: bytes  # PNG of the union canvas: `after` washed out, changed pixels red


def compare(before: bytes, after: bytes, *, tolerance: int = 16) -> Difference:
    """How many pixels differ between two captures. ValueError when an image cannot be decoded,
    has more than MAX_PIXELS pixels, or `tolerance` is not 0–255."""
    if not 0 <= tolerance <= 255:
        raise ValueError(f"tolerance must be 0–255, not {tolerance}")
    old, new = _decode(before, "before"), _decode(after, "after")
    height = max(old.shape[0], new.shape[0])
    width = max(old.shape[1], new.shape[1])
    changed = _covered(old, height, width) ^ _covered(new, height, width)
    rows, columns = min(old.shape[0], new.shape[0]), min(old.shape[1], new.shape[1])
    overlap = changed[:rows, :columns]
    for channel in range(3):
        a, b = old[:rows, :columns, channel], new[:rows, :columns, channel]
        overlap |= (np.maximum(a, b) - np.minimum(a, b)) > tolerance
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    canvas[: new.shape[0], : new.shape[1]] = _WASH[new]
    canvas[changed] = _RED
    out = io.BytesIO()
    Image.fromarray(canvas).save(out, format="PNG", compress_level=1)
    count, total = int(np.count_nonzero(changed)), height * width
    return Difference(count, total, round(100 * count / total, 3), out.getvalue())


def _covered(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    mask[: pixels.shape[0], : pixels.shape[1]] = True
    return mask


def _decode(data: bytes, name: str) -> np.ndarray:
    """The image as an (height, width, 3) uint8 array, refused before decoding when too large."""
    try:
        with Image.open(io.BytesIO(data), formats=_FORMATS) as image:
            if image.width * image.height > MAX_PIXELS:
                raise ValueError(
                    f"the {name} image is {image.width} × {image.height} pixels, "
                    f"more than {MAX_PIXELS:,}"
                )
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                rgba = image.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
            return np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(f"the {name} image cannot be decoded: {exc}") from exc
