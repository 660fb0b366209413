"""The sales rules without I/O: documents (CPF/CNPJ) and which address is the default."""

from __future__ import annotations

import pytest

from services.platform import FieldError
from services.sales.domain import Document, DocumentType, initial_default, parse_document


@pytest.mark.parametrize(
    ("raw", "digits", "kind"),
    [
        ("52998224725", "52998224725", DocumentType.CPF),
        ("529.982.247-25", "52998224725", DocumentType.CPF),
        ("11222333000181", "11222333000181", DocumentType.CNPJ),
        ("11.222.333/0001-81", "11222333000181", DocumentType.CNPJ),
    ],
)
def test_a_valid_document_is_stored_as_digits_with_its_type(
    raw: str, digits: str, kind: DocumentType
) -> None:
    assert parse_document(raw) == Document(digits, kind)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("52998224724", "is not a valid CPF (check digits)"),
        ("11222333000182", "is not a valid CNPJ (check digits)"),
        ("111.111.111-11", "must not repeat a single digit"),  # its check digits are right
        ("00000000000000", "must not repeat a single digit"),
        ("5299822472", "must have 11 (CPF) or 14 (CNPJ) digits"),
        ("529982247250", "must have 11 (CPF) or 14 (CNPJ) digits"),
        ("12ABC34501DE35", "must have 11 (CPF) or 14 (CNPJ) digits"),  # stdnum's alphanumeric CNPJ
        ("...........", "must have 11 (CPF) or 14 (CNPJ) digits"),
    ],
)
def test_a_bad_document_is_refused_without_echoing_it(raw: str, message: str) -> None:
    assert parse_document(raw) == FieldError("document", message)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], None),
        ([False], 0),
        ([False, False], 0),
        ([False, True], 1),
        ([True, False, False], 0),
    ],
)
def test_the_flagged_address_else_the_first_is_the_default(
    flags: list[bool], expected: int | None
) -> None:
    assert initial_default(flags) == expected


def test_two_default_addresses_are_refused() -> None:
    assert initial_default([True, False, True]) == FieldError(
        "addresses", "at most one address can be the default"
    )
