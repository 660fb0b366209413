"""The sales rules without I/O: which address is the default, and what a
product description does to the catalogue replica."""

from __future__ import annotations

import pytest

from services.platform import FieldError
from services.sales.domain import (
    ReplicaChange,
    ReplicaVersion,
    initial_default,
    replica_change,
)


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
