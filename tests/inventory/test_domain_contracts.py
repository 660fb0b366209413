"""The state names of the domain (`services/*/domain.py` enums) are the contract's: each is
pinned to the enum the OpenAPI and AsyncAPI documents generate for it, to the CHECK constraint
of the column that stores it, and to the migration that creates that constraint. A value added
on one side only fails here, not in production."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path

import pytest
from sqlalchemy import CheckConstraint

from generated.events import models as event_models
from generated.inventory import models as inventory_models
from services.inventory import domain as inventory
from services.inventory.tables import metadata as inventory_tables

MIGRATIONS = Path(inventory.__file__).parent / "migrations" / "versions"

PINS: list[tuple[type[StrEnum], list[type[StrEnum]], str, str]] = [
    # domain enum, generated enums with the same values, table, CHECK constraint
    (
        inventory.ProductStatus,
        [inventory_models.ProductStatus, event_models.ProductStatus],
        "products",
        "products_status_valid",
    ),
    (
        inventory.MovementType,
        [inventory_models.MovementType],
        "stock_movements",
        "stock_movements_type_valid",
    ),
    (
        inventory.ReservationStatus,
        [inventory_models.ReservationStatus],
        "reservations",
        "reservations_status_valid",
    ),
    (
        inventory.ReleaseReason,
        [inventory_models.ReleaseReason, event_models.StockReleaseReason],
        "reservations",
        "reservations_reason_valid",
    ),
]


def _values(enum: type[StrEnum]) -> set[str]:
    return {member.value for member in enum}


def _check(table: str, name: str) -> CheckConstraint:
    for constraint in inventory_tables.tables[table].constraints:
        if isinstance(constraint, CheckConstraint) and constraint.name == name:
            return constraint
    raise AssertionError(f"{table} has no CHECK constraint {name}")


@pytest.mark.parametrize(
    ("domain_enum", "generated", "table", "constraint"),
    PINS,
    ids=[pin[0].__name__ for pin in PINS],
)
def test_domain_states_are_the_contracts_and_the_databases(
    domain_enum: type[StrEnum], generated: list[type[StrEnum]], table: str, constraint: str
) -> None:
    values = _values(domain_enum)
    for enum in generated:
        assert _values(enum) == values, f"{enum.__module__}.{enum.__qualname__}"
    check = _check(table, constraint)
    sql = str(check.sqltext)
    assert set(re.findall(r"'([^']*)'", sql)) == values
    # The migration that creates the table states the same constraint.
    migrations = "".join(path.read_text() for path in sorted(MIGRATIONS.glob("*.py")))
    assert sql in migrations
    assert constraint in migrations


def test_every_string_column_with_a_check_list_is_pinned() -> None:
    """A new CHECK (... IN (...)) constraint needs its domain enum pinned above."""
    pinned = {(table, constraint) for _, _, table, constraint in PINS}
    listed = {
        (table.name, str(constraint.name))
        for table in inventory_tables.tables.values()
        for constraint in table.constraints
        if isinstance(constraint, CheckConstraint) and " IN (" in str(constraint.sqltext)
    }
    assert listed == pinned
