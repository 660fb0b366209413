"""The kit's one rule for CPF and CNPJ (sales' customers, financial's suppliers): stored as
digits with its type; refused without echoing the value."""

from __future__ import annotations

import pytest

from services.platform import Document, DocumentType, FieldError, parse_document


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
    ("raw", "expected"),
    [
        ("11.222.333/0001-81", Document("11222333000181", DocumentType.CNPJ)),
        ("52998224725", FieldError("cnpj", "must have 14 (CNPJ) digits")),  # a valid CPF
        ("11.111.111/1111-11", FieldError("cnpj", "must not repeat a single digit")),
        ("11222333000182", FieldError("cnpj", "is not a valid CNPJ (check digits)")),
    ],
)
def test_the_accepted_kinds_narrow_the_rule(raw: str, expected: Document | FieldError) -> None:
    assert parse_document(raw, "cnpj", accepted=[DocumentType.CNPJ]) == expected
