"""Warehouses: the seeded default one (where reservations are made and where stock goes when
no warehouse is named), creating and updating the others."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

from pydantic import MISSING
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from generated.inventory import models
from services.inventory import domain
from services.inventory.tables import Warehouse, metadata
from services.platform import (
    Problem,
    ServiceContext,
    UnitOfWork,
    check_rules,
    flush_unique,
    insert_ignoring_conflicts,
    require_if_match,
    resource_not_found,
    utc_now,
)


async def seed_default_warehouse(ctx: ServiceContext) -> None:
    """Make the default warehouse exist (start-up hook; idempotent and replica-safe: the
    unique code makes a concurrent seed a no-op)."""
    now = utc_now()
    async with ctx.database.session() as session:
        await session.execute(
            insert_ignoring_conflicts(
                ctx.database.dialect,
                metadata.tables["warehouses"],
                {
                    "id": uuid4(),
                    "code": domain.DEFAULT_WAREHOUSE_CODE,
                    "name": domain.DEFAULT_WAREHOUSE_NAME,
                    "address": None,
                    "is_default": True,
                    "created_at": now,
                    "updated_at": now,
                    "version": 1,
                },
            )
        )
        await session.commit()


async def default_warehouse_id(session: AsyncSession) -> UUID:
    statement = select(Warehouse.id).where(col(Warehouse.code) == domain.DEFAULT_WAREHOUSE_CODE)
    found = (await session.scalars(statement)).first()
    if found is None:
        raise RuntimeError("the default warehouse is missing (the start-up hook seeds it)")
    return found


def _code_taken(code: str) -> Problem:
    return Problem(409, detail=f"A warehouse with code {code} already exists.")


def _address(address: models.Address | None) -> dict[str, Any] | None:
    """The address as stored: the JSON the client sent (fields it left out stay out)."""
    return None if address is None else address.model_dump(mode="json")


async def create_warehouse(
    uow: UnitOfWork, body: models.WarehouseCreate, *, new_id: UUID | None = None
) -> models.Warehouse:
    """A new warehouse; `new_id` fixes its id (the demo data set's, known to the docs)."""
    session = uow.session
    check_rules(domain.warehouse_code_errors(body.code))
    if (
        await session.scalars(select(Warehouse.id).where(col(Warehouse.code) == body.code))
    ).first():
        raise _code_taken(body.code)
    now = utc_now()
    warehouse = Warehouse(
        id=new_id or uuid4(),
        code=body.code,
        name=body.name,
        address=None if body.address is MISSING else _address(body.address),
        created_at=now,
        updated_at=now,
    )
    session.add(warehouse)
    await flush_unique(session, _code_taken(body.code))
    return models.Warehouse.model_validate(warehouse, from_attributes=True)


async def update_warehouse(
    uow: UnitOfWork, warehouse_id: UUID, body: models.WarehouseUpdate, if_match: str | None
) -> models.Warehouse:
    statement = select(Warehouse).where(col(Warehouse.id) == warehouse_id).with_for_update()
    warehouse = (await uow.session.scalars(statement)).first()
    if warehouse is None:
        raise resource_not_found("Warehouse", warehouse_id)
    require_if_match(if_match, warehouse.version)
    changes: dict[str, Any] = {}
    if "name" in body.model_fields_set:
        changes["name"] = body.name
    if "address" in body.model_fields_set and body.address is not MISSING:
        changes["address"] = _address(body.address)
    changed = {name: value for name, value in changes.items() if getattr(warehouse, name) != value}
    if changed:
        for name, value in changed.items():
            setattr(warehouse, name, value)
        warehouse.version += 1
        warehouse.updated_at = utc_now()
    return models.Warehouse.model_validate(warehouse, from_attributes=True)
