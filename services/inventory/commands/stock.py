"""Stock receipts and adjustments, and the movement log every stock change writes.

A stock row (one product in one warehouse) is created on first use with `min_quantity` 10.
Its changes are serialised by its row lock: the receipt's upsert and the adjustment's SELECT …
FOR UPDATE take it, as do the reservations' conditional UPDATEs; the CHECK constraints on
`stock` are the last guard (never negative, never more reserved than on hand).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final
from uuid import UUID

from pydantic import MISSING
from sqlalchemy import Uuid
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from generated.events import publishers as events
from generated.events.models import InventoryStockLowAlertPayload
from generated.inventory import models
from services.inventory import domain
from services.inventory.commands.warehouses import default_warehouse_id
from services.inventory.domain import MovementType, StockLevel
from services.inventory.errors import unknown
from services.inventory.tables import Movement, Product, Stock, Warehouse, metadata
from services.platform import (
    Caller,
    FieldError,
    Problem,
    Sql,
    UnitOfWork,
    check_rules,
    insert_ignoring_conflicts,
    unprocessable,
    utc_now,
)

_STOCK = metadata.tables["stock"]

# --- receipts: the hot path ------------------------------------------------------------------

# Sixteen concurrent receipts of one product queue on its stock row's lock, so the lock must be
# held as briefly as possible. On PostgreSQL a receipt is ONE statement — the stock row created
# or increased (which also checks the product is live, the warehouse exists and the ceiling is
# kept: no row back when not) and its `in` movement — sent with the COMMIT in one round trip
# (`uow.commit_with`): the lock lives while the server runs them, never while this process gets
# round to the next statement. SQLite (embedded mode) cannot put an INSERT in a WITH: there the
# same two steps run one after the other in the kit's transaction.
_UPSERT = """
INSERT INTO stock AS s (product_id, warehouse_id, on_hand, reserved, min_quantity, updated_at)
SELECT p.id, w.id, :quantity, 0, :min_quantity, :now
FROM products p JOIN warehouses w ON {warehouse}
WHERE p.id = :product_id AND p.deleted_at IS NULL AND :quantity <= :ceiling
ON CONFLICT (product_id, warehouse_id) DO UPDATE
SET on_hand = s.on_hand + excluded.on_hand, updated_at = excluded.updated_at
WHERE s.on_hand + excluded.on_hand <= :ceiling
RETURNING warehouse_id, on_hand, reserved
"""
_MOVEMENT_COLUMNS = """stock_movements (product_id, warehouse_id, type, quantity,
    on_hand_before, on_hand_after, reserved_before, reserved_after, reason, reference, user_id,
    created_at)"""
_RECEIPT = """
WITH s AS ({upsert})
INSERT INTO {columns}
SELECT :product_id, s.warehouse_id, :type, :quantity, s.on_hand - :quantity, s.on_hand,
    s.reserved, s.reserved, :reason, :reference, :user_id, :now
FROM s
RETURNING id, warehouse_id, on_hand_after, reserved_after
"""
_BY_ID = "w.id = :warehouse_id"
_BY_DEFAULT = "w.code = :default_code"
_RECEIPT_INTO: Final = Sql(
    _RECEIPT.format(upsert=_UPSERT.format(warehouse=_BY_ID), columns=_MOVEMENT_COLUMNS)
)
_RECEIPT_DEFAULT: Final = Sql(
    _RECEIPT.format(upsert=_UPSERT.format(warehouse=_BY_DEFAULT), columns=_MOVEMENT_COLUMNS)
)
_UPSERT_INTO: Final = Sql(_UPSERT.format(warehouse=_BY_ID), types={"warehouse_id": Uuid()})
_UPSERT_DEFAULT: Final = Sql(_UPSERT.format(warehouse=_BY_DEFAULT), types={"warehouse_id": Uuid()})
_RECORD_MOVEMENT: Final = Sql(f"""
INSERT INTO {_MOVEMENT_COLUMNS}
VALUES (:product_id, :warehouse_id, :type, :quantity, :on_hand_before, :on_hand_after,
    :reserved, :reserved, :reason, :reference, :user_id, :now)
RETURNING id
""")


async def receive_stock(
    uow: UnitOfWork, caller: Caller, body: models.StockReceive
) -> models.Movement:
    """Units in: the stock row and its `in` movement. No event (receipts never bring stock
    down to its minimum)."""
    check_rules(domain.reason_errors(body.reason))
    now = utc_now()
    into = body.warehouse_id is not MISSING
    where: dict[str, Any] = (
        {"warehouse_id": body.warehouse_id}
        if into
        else {"default_code": domain.DEFAULT_WAREHOUSE_CODE}
    )
    values: dict[str, Any] = {
        "product_id": body.product_id,
        "quantity": body.quantity,
        "min_quantity": domain.DEFAULT_MIN_QUANTITY,
        "ceiling": domain.MAX_QUANTITY,
        "type": MovementType.IN.value,
        "reason": body.reason,
        "reference": None if body.reference is MISSING else body.reference,
        "user_id": caller.user_id,
        "now": now,
        **where,
    }
    if uow.dialect == "postgresql":
        rows = await uow.commit_with(_RECEIPT_INTO if into else _RECEIPT_DEFAULT, **values)
        if not rows:
            raise await _refusal(uow.session, body)
        recorded = rows[0]
        warehouse_id, on_hand, reserved = (
            recorded["warehouse_id"],
            recorded["on_hand_after"],
            recorded["reserved_after"],
        )
    else:
        upserted = await uow.fetch_all(_UPSERT_INTO if into else _UPSERT_DEFAULT, **values)
        if not upserted:
            raise await _refusal(uow.session, body)
        warehouse_id = upserted[0]["warehouse_id"]
        on_hand, reserved = upserted[0]["on_hand"], upserted[0]["reserved"]
        level = {"on_hand_before": on_hand - body.quantity, "on_hand_after": on_hand}
        [recorded] = await uow.fetch_all(
            _RECORD_MOVEMENT,
            **{**values, "warehouse_id": warehouse_id, "reserved": reserved, **level},
        )
    return models.Movement(
        id=recorded["id"],
        product_id=body.product_id,
        warehouse_id=warehouse_id,
        type=models.MovementType.in_,
        quantity=body.quantity,
        on_hand_before=on_hand - body.quantity,
        on_hand_after=on_hand,
        reserved_before=reserved,
        reserved_after=reserved,
        reason=body.reason,
        reference=values["reference"],
        user_id=caller.user_id,
        created_at=now,
    )


async def _refusal(session: AsyncSession, body: models.StockReceive) -> Problem:
    """Why a receipt changed nothing: an unknown product or warehouse, or the ceiling (422)."""
    product, warehouse_id = await _target(session, body.product_id, body.warehouse_id)
    found = await session.get(Stock, (product.id, warehouse_id))
    level = StockLevel(0, 0) if found is None else StockLevel(found.on_hand, found.reserved)
    refused = domain.receive(level, body.quantity)
    if isinstance(refused, FieldError):
        return unprocessable(f"The stock cannot change: {refused.message}.", [refused])
    # Both exist and it fits now: the product was created after the statement looked for it.
    return unknown("product", body.product_id, "product_id")


def _allowed(after: StockLevel | FieldError) -> StockLevel:
    if isinstance(after, FieldError):
        raise unprocessable(f"The stock cannot change: {after.message}.", [after])
    return after


# --- adjustments ----------------------------------------------------------------------------


async def _target(
    session: AsyncSession, product_id: UUID, warehouse_id: UUID | MISSING
) -> tuple[Product, UUID]:
    """The live product and the warehouse (the default one when omitted) a stock request
    names; 422 when either does not exist (they are body fields)."""
    statement = select(Product).where(
        col(Product.id) == product_id, col(Product.deleted_at).is_(None)
    )
    product = (await session.scalars(statement)).first()
    if product is None:
        raise unknown("product", product_id, "product_id")
    if warehouse_id is MISSING:
        return product, await default_warehouse_id(session)
    if await session.get(Warehouse, warehouse_id) is None:
        raise unknown("warehouse", warehouse_id, "warehouse_id")
    return product, warehouse_id


async def _locked_stock(
    session: AsyncSession, dialect: str, product_id: UUID, warehouse_id: UUID
) -> Stock:
    """The stock row, created on first use (min_quantity 10), with its row lock held."""
    await session.execute(
        insert_ignoring_conflicts(
            dialect,
            _STOCK,
            {
                "product_id": product_id,
                "warehouse_id": warehouse_id,
                "on_hand": 0,
                "reserved": 0,
                "min_quantity": domain.DEFAULT_MIN_QUANTITY,
                "updated_at": utc_now(),
            },
        )
    )
    statement = (
        select(Stock)
        .where(col(Stock.product_id) == product_id, col(Stock.warehouse_id) == warehouse_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(statement)).one()


async def adjust_stock(
    uow: UnitOfWork, caller: Caller, body: models.StockAdjust
) -> models.Movement:
    """A signed change of the units on hand (a count, damage), optionally a new minimum; never
    below zero nor below what is reserved."""
    check_rules(domain.reason_errors(body.reason))
    session = uow.session
    product, warehouse = await _target(session, body.product_id, body.warehouse_id)
    stock = await _locked_stock(session, uow.dialect, product.id, warehouse)
    before = StockLevel(stock.on_hand, stock.reserved)
    after = _allowed(domain.adjust(before, body.quantity))
    now = utc_now()
    was_low = domain.is_low(before.available, stock.min_quantity)
    stock.on_hand = after.on_hand
    if body.min_quantity is not MISSING:
        stock.min_quantity = body.min_quantity
    stock.updated_at = now
    entry = movement(
        product_id=product.id,
        warehouse_id=warehouse,
        kind=MovementType.ADJUSTMENT,
        quantity=body.quantity,
        before=before,
        after=after,
        reason=body.reason,
        reference=None if body.reference is MISSING else body.reference,
        user_id=caller.user_id,
        now=now,
    )
    session.add(entry)
    await session.flush()
    # Alert when a manual change brings the product down to its minimum (not on every change
    # while it stays low; confirmations alert each time, as the saga has no other signal).
    if body.quantity < 0 and not was_low and domain.is_low(after.available, stock.min_quantity):
        emit_low_alert(uow, product, warehouse, after.available, stock.min_quantity)
    return models.Movement.model_validate(entry, from_attributes=True)


# --- shared with the reservations -----------------------------------------------------------


def movement(
    *,
    product_id: UUID,
    warehouse_id: UUID,
    kind: MovementType,
    quantity: int,
    before: StockLevel,
    after: StockLevel,
    reason: str,
    reference: str | None,
    user_id: UUID | None,
    now: datetime,
) -> Movement:
    """The movement row of one stock change (added to the session by the caller)."""
    return Movement(
        product_id=product_id,
        warehouse_id=warehouse_id,
        type=kind.value,
        quantity=quantity,
        on_hand_before=before.on_hand,
        on_hand_after=after.on_hand,
        reserved_before=before.reserved,
        reserved_after=after.reserved,
        reason=reason,
        reference=reference,
        user_id=user_id,
        created_at=now,
    )


def emit_low_alert(
    uow: UnitOfWork, product: Product, warehouse_id: UUID, available: int, min_quantity: int
) -> None:
    events.publish_inventory_stock_low_alert(
        uow,
        InventoryStockLowAlertPayload(
            product_id=product.id,
            sku=product.sku,
            warehouse_id=warehouse_id,
            available=available,
            min_quantity=min_quantity,
        ),
    )
