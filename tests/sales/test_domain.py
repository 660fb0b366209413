"""The sales rules without I/O: documents (CPF/CNPJ), which address is the default, and what a
product description does to the catalogue replica."""

from __future__ import annotations

import pytest

from services.platform import FieldError
from services.sales.domain import (
    Document,
    DocumentType,
    ReplicaChange,
    ReplicaVersion,
    initial_default,
    parse_document,
    replica_change,
)


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


@pytest.mark.parametrize(
    ("stored", "incoming", "change"),
    [
        (None, ReplicaVersion(1, "KB-1"), ReplicaChange.INSERT),
        (None, ReplicaVersion(7, "KB-1"), ReplicaChange.INSERT),  # first seen late: still news
        (ReplicaVersion(1, "KB-1"), ReplicaVersion(2, "KB-1"), ReplicaChange.UPDATE),
        (ReplicaVersion(2, "KB-1"), ReplicaVersion(5, "KB-1"), ReplicaChange.UPDATE),  # gaps
        (ReplicaVersion(2, "KB-1"), ReplicaVersion(2, "KB-1"), ReplicaChange.STALE),  # redelivery
        (ReplicaVersion(3, "KB-1"), ReplicaVersion(2, "KB-1"), ReplicaChange.STALE),  # older
        (
            ReplicaVersion(3, "KB-1"),
            ReplicaVersion(2, "KB-2"),
            ReplicaChange.STALE,
        ),  # older wins no SKU
        (ReplicaVersion(1, "KB-1"), ReplicaVersion(2, "KB-2"), ReplicaChange.SKU_CHANGED),
    ],
)
def test_the_replica_keeps_the_newest_version_under_one_sku(
    stored: ReplicaVersion | None, incoming: ReplicaVersion, change: ReplicaChange
) -> None:
    assert replica_change(stored, incoming) is change
