"""Reservations, the inventory side of the order saga (ADR 0003): reserve an order's items
(all or nothing), confirm them (the units leave), release them (cancelled, or expired).

The consumers call these in the unit of work the kit opened with the event's inbox row; the
expiry job opens one unit of work per reservation. Stock is taken with conditional UPDATEs
(`... WHERE on_hand - reserved >= :q`), lines sorted by product id, so two orders racing for
the last unit cannot both get it and never deadlock.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Final
from uuid import UUID

from sqlalchemy import and_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from generated.events import publishers as events
from generated.events.models import (
    InventoryStockConfirmedPayload,
    InventoryStockReleasedPayload,
    InventoryStockReservationFailedPayload,
    InventoryStockReservedPayload,
    StockItem,
    StockShortage,
)
from services.inventory import domain
from services.inventory.commands.stock import emit_low_alert, movement
from services.inventory.commands.warehouses import default_warehouse_id
from services.inventory.domain import (
    Line,
    MovementType,
    ReleaseReason,
    ReservationStatus,
    StockLevel,
)
from services.inventory.tables import (
    Movement,
    Product,
    Reservation,
    ReservationFailure,
    ReservationItem,
    Stock,
    metadata,
)
from services.platform import DeadLetter, ServiceContext, UnitOfWork, utc_now

log = logging.getLogger("services.inventory")

EXPIRY_BATCH: Final = 100
_STOCK = metadata.tables["stock"]


class ReserveOutcome(StrEnum):
    RESERVED = "reserved"
    SKIPPED = "skipped"  # the order already has a reservation (or a cancellation tombstone)
    FAILED = "failed"  # not every item could be reserved; the failure is recorded instead


async def _items(session: AsyncSession, reservation_id: UUID) -> list[ReservationItem]:
    statement = (
        select(ReservationItem)
        .where(col(ReservationItem.reservation_id) == reservation_id)
        .order_by(col(ReservationItem.product_id), col(ReservationItem.warehouse_id))
    )
    return list((await session.scalars(statement)).all())


async def _reservation_of(
    session: AsyncSession, order_id: UUID, *, lock: bool = False
) -> Reservation | None:
    statement = select(Reservation).where(col(Reservation.order_id) == order_id)
    if lock:
        statement = statement.with_for_update().execution_options(populate_existing=True)
    return (await session.scalars(statement)).first()


async def _live_product_ids(session: AsyncSession, ids: Iterable[UUID]) -> set[UUID]:
    statement = select(Product.id).where(
        col(Product.id).in_(list(ids)), col(Product.deleted_at).is_(None)
    )
    return set((await session.scalars(statement)).all())


def _stock_items(items: Iterable[ReservationItem]) -> list[StockItem]:
    return [
        StockItem(product_id=i.product_id, warehouse_id=i.warehouse_id, quantity=i.quantity)
        for i in items
    ]


# --- reserve --------------------------------------------------------------------------------


async def reserve_order(uow: UnitOfWork, order_id: UUID, lines: Iterable[Line]) -> ReserveOutcome:
    """Reserve every line of an order in the default warehouse, or nothing.

    The attempt runs in a savepoint of the caller's unit of work (a consumer's, holding the
    inbox row the kit wrote). When a product is unknown or short, the savepoint is rolled back
    (every unit the attempt took is back) and the failure is recorded in the same transaction
    (`inventory.stock.reservation_failed`): FAILED. The caller commits either way.
    """
    session = uow.session
    existing = await _reservation_of(session, order_id)
    if existing is not None:
        if (
            existing.status == ReservationStatus.RELEASED
            and existing.reason == ReleaseReason.CANCELLED
        ):
            log.info("order %s was cancelled before it was created: nothing reserved", order_id)
        else:
            log.info(
                "order %s already has a reservation (%s): nothing to do", order_id, existing.status
            )
        return ReserveOutcome.SKIPPED
    merged = domain.merge_lines(lines)
    async with uow.savepoint() as attempt:
        reserved = await _take_stock(uow, order_id, merged)
        if not reserved:
            await attempt.rollback()
    if reserved:
        return ReserveOutcome.RESERVED
    await _record_reservation_failure(uow, order_id, merged)
    return ReserveOutcome.FAILED


async def _take_stock(uow: UnitOfWork, order_id: UUID, merged: Sequence[Line]) -> bool:
    """Reserve every (merged) line and say so (`stock.reserved`); False as soon as one cannot
    be taken, with the lines before it taken: the caller rolls its savepoint back."""
    session = uow.session
    known = await _live_product_ids(session, (line.product_id for line in merged))
    if len(known) < len(merged):
        return False
    warehouse = await default_warehouse_id(session)
    now = utc_now()
    movements: list[Movement] = []
    for line in merged:  # sorted by product id: row locks are always taken in the same order
        taken = (
            await session.execute(
                update(_STOCK)
                .where(
                    _STOCK.c.product_id == line.product_id,
                    _STOCK.c.warehouse_id == warehouse,
                    _STOCK.c.on_hand - _STOCK.c.reserved >= line.quantity,
                )
                .values(reserved=_STOCK.c.reserved + line.quantity, updated_at=now)
                .returning(_STOCK.c.on_hand, _STOCK.c.reserved)
            )
        ).first()
        if taken is None:
            return False
        on_hand, reserved = int(taken[0]), int(taken[1])
        movements.append(
            movement(
                product_id=line.product_id,
                warehouse_id=warehouse,
                kind=MovementType.RESERVATION,
                quantity=line.quantity,
                before=StockLevel(on_hand, reserved - line.quantity),
                after=StockLevel(on_hand, reserved),
                reason=f"Reservation for order {order_id}",
                reference=str(order_id),
                user_id=None,
                now=now,
            )
        )
    reservation = Reservation(
        order_id=order_id,
        status=ReservationStatus.PENDING.value,
        warehouse_id=warehouse,
        expires_at=domain.expires_at(now),
        created_at=now,
        updated_at=now,
    )
    session.add(reservation)
    # A concurrent duplicate of this order fails here (unique order_id) and is retried.
    await session.flush()
    items = [
        ReservationItem(
            reservation_id=reservation.id,
            product_id=line.product_id,
            warehouse_id=warehouse,
            quantity=line.quantity,
        )
        for line in merged
    ]
    session.add_all([*items, *movements])
    await session.flush()
    events.publish_inventory_stock_reserved(
        uow,
        InventoryStockReservedPayload(
            order_id=order_id,
            reservation_id=reservation.id,
            items=_stock_items(items),
            expires_at=reservation.expires_at,
        ),
    )
    return True


async def _record_reservation_failure(
    uow: UnitOfWork, order_id: UUID, merged: Sequence[Line]
) -> None:
    """Record why an order could not be reserved and tell the saga (reservation_failed)."""
    session = uow.session
    if await _reservation_of(session, order_id) is not None:
        # A concurrent delivery of the order reserved (or a cancellation tombstoned) it.
        log.info("order %s got a reservation meanwhile: no failure to report", order_id)
        return
    known = await _live_product_ids(session, (line.product_id for line in merged))
    warehouse = await default_warehouse_id(session)
    available: dict[UUID, int] = {}
    if known:
        rows = await session.execute(
            select(Stock.product_id, col(Stock.on_hand) - col(Stock.reserved)).where(
                col(Stock.product_id).in_(list(known)), col(Stock.warehouse_id) == warehouse
            )
        )
        available = {product_id: int(units) for product_id, units in rows.all()}
    report = domain.shortages(merged, available)
    reason = domain.failure_reason(
        line.product_id for line in merged if line.product_id not in known
    )
    items = [
        StockShortage(product_id=s.product_id, requested=s.requested, available=s.available)
        for s in report
    ]
    session.add(
        ReservationFailure(
            order_id=order_id,
            reason=reason,
            items=[item.model_dump(mode="json") for item in items],
            created_at=utc_now(),
        )
    )
    await session.flush()
    log.info("order %s could not be reserved: %s", order_id, reason)
    events.publish_inventory_stock_reservation_failed(
        uow, InventoryStockReservationFailedPayload(order_id=order_id, reason=reason, items=items)
    )


# --- confirm --------------------------------------------------------------------------------


def _refuse(order_id: UUID, reservation: Reservation, action: str) -> DeadLetter:
    return DeadLetter(
        f"illegal transition: the reservation of order {order_id} is {reservation.status}, "
        f"it cannot be {action}"
    )


async def confirm_order(uow: UnitOfWork, order_id: UUID) -> None:
    """pending → confirmed: the reserved units leave (on_hand and reserved both fall)."""
    session = uow.session
    reservation = await _reservation_of(session, order_id, lock=True)
    if reservation is None:
        # Not dropped: sales confirms only reserved orders, so this needs a human look.
        raise DeadLetter(f"order {order_id} has no reservation to confirm")
    decision = domain.decide(ReservationStatus(reservation.status), ReservationStatus.CONFIRMED)
    if decision is domain.Decision.IGNORE:
        log.info("reservation of order %s is already confirmed", order_id)
        return
    if decision is domain.Decision.REFUSE:
        raise _refuse(order_id, reservation, "confirmed")
    items = await _items(session, reservation.id)
    now = utc_now()
    low: list[tuple[UUID, UUID, int, int]] = []
    for item in items:
        on_hand, reserved, min_quantity = await _shift_units(
            session,
            reservation,
            item,
            on_hand=-item.quantity,
            reserved=-item.quantity,
            kind=MovementType.CONFIRMATION,
            reason=f"Order {order_id} confirmed",
            now=now,
        )
        if domain.is_low(on_hand - reserved, min_quantity):
            low.append((item.product_id, item.warehouse_id, on_hand - reserved, min_quantity))
    reservation.status = ReservationStatus.CONFIRMED.value
    reservation.updated_at = now
    await session.flush()
    events.publish_inventory_stock_confirmed(
        uow,
        InventoryStockConfirmedPayload(
            order_id=order_id, reservation_id=reservation.id, items=_stock_items(items)
        ),
    )
    if low:
        # Deleted products too: they cannot be deleted while their units are reserved.
        products = {
            p.id: p
            for p in (
                await session.scalars(
                    select(Product).where(col(Product.id).in_([x[0] for x in low]))
                )
            ).all()
        }
        for product_id, warehouse_id, available, min_quantity in low:
            emit_low_alert(uow, products[product_id], warehouse_id, available, min_quantity)


# --- release: cancelled or expired ----------------------------------------------------------


async def _shift_units(
    session: AsyncSession,
    reservation: Reservation,
    item: ReservationItem,
    *,
    on_hand: int,
    reserved: int,
    kind: MovementType,
    reason: str,
    now: datetime,
) -> tuple[int, int, int]:
    """Move one reservation line's units (`on_hand` / `reserved`: the signed changes) and
    record the movement; the stock row's on_hand, reserved and min_quantity after it. A fall
    of `reserved` is guarded by the row itself: it never takes more than the row holds."""
    guard = [_STOCK.c.reserved >= -reserved] if reserved < 0 else []
    row = (
        await session.execute(
            update(_STOCK)
            .where(
                _STOCK.c.product_id == item.product_id,
                _STOCK.c.warehouse_id == item.warehouse_id,
                *guard,
            )
            .values(
                on_hand=_STOCK.c.on_hand + on_hand,
                reserved=_STOCK.c.reserved + reserved,
                updated_at=now,
            )
            .returning(_STOCK.c.on_hand, _STOCK.c.reserved, _STOCK.c.min_quantity)
        )
    ).first()
    if row is None:
        raise RuntimeError(
            f"stock of {item.product_id} is missing or holds fewer reserved units than "
            f"reservation {reservation.id} took"
        )
    after = StockLevel(int(row[0]), int(row[1]))
    session.add(
        movement(
            product_id=item.product_id,
            warehouse_id=item.warehouse_id,
            kind=kind,
            quantity=item.quantity,
            before=StockLevel(after.on_hand - on_hand, after.reserved - reserved),
            after=after,
            reason=reason,
            reference=str(reservation.order_id),
            user_id=None,
            now=now,
        )
    )
    return after.on_hand, after.reserved, int(row[2])


async def _release(uow: UnitOfWork, reservation: Reservation, reason: ReleaseReason) -> None:
    """pending → released: every reserved unit back to available, one movement each."""
    session = uow.session
    items = await _items(session, reservation.id)
    now = utc_now()
    for item in items:
        await _shift_units(
            session,
            reservation,
            item,
            on_hand=0,
            reserved=-item.quantity,
            kind=MovementType.RELEASE,
            reason=f"Reservation of order {reservation.order_id} {reason.value}",
            now=now,
        )
    reservation.status = ReservationStatus.RELEASED.value
    reservation.reason = reason.value
    reservation.updated_at = now
    await session.flush()
    events.publish_inventory_stock_released(
        uow,
        InventoryStockReleasedPayload(
            order_id=reservation.order_id,
            reservation_id=reservation.id,
            reason=reason.value,
            items=_stock_items(items),
        ),
    )


async def cancel_order(uow: UnitOfWork, order_id: UUID) -> None:
    """pending → released (cancelled). With no reservation yet (the cancellation overtook the
    order), a released tombstone makes the late `sales.order.created` reserve nothing; a
    confirmed one gives its units back (`_return_to_stock`)."""
    session = uow.session
    reservation = await _reservation_of(session, order_id, lock=True)
    if reservation is None:
        now = utc_now()
        session.add(
            Reservation(
                order_id=order_id,
                status=ReservationStatus.RELEASED.value,
                reason=ReleaseReason.CANCELLED.value,
                warehouse_id=await default_warehouse_id(session),
                expires_at=now,
                created_at=now,
                updated_at=now,
            )
        )
        # A concurrent `created` of the same order fails one of the two here; it is retried.
        await session.flush()
        log.info("order %s cancelled before any reservation: tombstone recorded", order_id)
        events.publish_inventory_stock_released(
            uow,
            InventoryStockReleasedPayload(
                order_id=order_id, reservation_id=None, reason=ReleaseReason.CANCELLED, items=[]
            ),
        )
        return
    if reservation.status == ReservationStatus.CONFIRMED.value:
        await _return_to_stock(uow, reservation)
        return
    decision = domain.decide(ReservationStatus(reservation.status), ReservationStatus.RELEASED)
    if decision is domain.Decision.IGNORE:
        log.info("reservation of order %s is already released (%s)", order_id, reservation.reason)
        return
    if decision is domain.Decision.REFUSE:
        raise _refuse(order_id, reservation, "released")
    await _release(uow, reservation, ReleaseReason.CANCELLED)


async def _return_to_stock(uow: UnitOfWork, reservation: Reservation) -> None:
    """An order cancelled after its stock left (confirmed, then cancelled before dispatch or
    after a failed delivery): its units come back on hand, one `in` movement each, once —
    the reservation stays confirmed and its reason `cancelled` records the return."""
    if reservation.reason == ReleaseReason.CANCELLED.value:
        log.info("stock of cancelled order %s was returned already", reservation.order_id)
        return
    session = uow.session
    now = utc_now()
    for item in await _items(session, reservation.id):
        await _shift_units(
            session,
            reservation,
            item,
            on_hand=item.quantity,
            reserved=0,
            kind=MovementType.IN,
            reason=f"Returned: order {reservation.order_id} cancelled after confirmation",
            now=now,
        )
    reservation.reason = ReleaseReason.CANCELLED.value
    reservation.updated_at = now
    log.info(
        "order %s cancelled after confirmation: its stock is back on hand", reservation.order_id
    )


async def expire_reservation(uow: UnitOfWork, reservation_id: UUID) -> bool:
    """Release a pending reservation (expired); False when it was confirmed, cancelled or is
    being handled meanwhile (SKIP LOCKED on PostgreSQL)."""
    statement = (
        select(Reservation)
        .where(
            and_(
                col(Reservation.id) == reservation_id,
                col(Reservation.status) == ReservationStatus.PENDING.value,
            )
        )
        .with_for_update(skip_locked=True)
    )
    reservation = (await uow.session.scalars(statement)).first()
    if reservation is None:
        return False
    await _release(uow, reservation, ReleaseReason.EXPIRED)
    return True


async def expire_reservations(ctx: ServiceContext) -> int:
    """The periodic job: release pending reservations older than 15 minutes, one transaction
    each (a confirmation holding one reservation delays no other); the count."""
    now = utc_now()
    async with ctx.database.read_session() as session:
        due = (
            await session.scalars(
                select(Reservation.id)
                .where(
                    col(Reservation.status) == ReservationStatus.PENDING.value,
                    col(Reservation.expires_at) <= now,
                )
                .order_by(col(Reservation.expires_at))
                .limit(EXPIRY_BATCH)
            )
        ).all()
    released = 0
    for reservation_id in due:
        async with ctx.unit_of_work() as uow:
            if await expire_reservation(uow, reservation_id):
                await uow.commit()
                released += 1
    if released:
        log.info("released %d expired reservations", released)
    return released
