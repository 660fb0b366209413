"""The kit's one LIKE pattern for a caller's search: literal, lower-case, NFC."""

from __future__ import annotations

import unicodedata

import pytest

from services.platform import like_pattern


@pytest.mark.parametrize(
    ("typed", "anywhere", "pattern"),
    [
        ("Silva", True, "%silva%"),
        ("5299", False, "5299%"),
        ("50%", True, "%50\\%%"),
        ("a_b", True, "%a\\_b%"),
        ("back\\slash", True, "%back\\\\slash%"),
        (
            unicodedata.normalize("NFD", "JOSÉ"),
            True,
            "%" + unicodedata.normalize("NFC", "josé") + "%",
        ),
    ],
)
def test_a_search_is_a_literal_lower_case_nfc_pattern(
    typed: str, anywhere: bool, pattern: str
) -> None:
    assert like_pattern(typed, anywhere=anywhere) == pattern
