"""Capture options written as text (a query string, a form, a signed render link)."""

from __future__ import annotations

import pytest

from snapshotd.errors import BadRequest
from snapshotd.services.capture_request import fields_from_text


def test_flags_are_read_as_words_in_any_case_and_a_misspelt_one_is_refused() -> None:
    fields = fields_from_text(
        [
            ("full_page", "TRUE"),
            ("block_ads", "No"),
            ("freeze_animations", " on "),
            ("reduced_motion", ""),
            ("forced_colors", "1"),
            ("block_trackers", "off"),
        ]
    )
    assert fields == {
        "full_page": True,
        "block_ads": False,
        "freeze_animations": True,
        "reduced_motion": False,
        "forced_colors": True,
        "block_trackers": False,
    }
    with pytest.raises(BadRequest, match="full_page: 'ture' is neither true nor false") as refused:
        fields_from_text([("full_page", "ture")])
    assert refused.value.field == "full_page"
