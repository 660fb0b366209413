"""Event consumers of the inventory service: one coroutine per event `inventory.queue` receives,
named and typed by the generated `InventoryConsumers` Protocol (`service.py` checks it).

The kit's consumer wrapper has validated the whole envelope (`event` is its generated model,
`event.payload` the typed payload), recorded the event in the inbox (a duplicate never reaches
these) and opened the unit of work; it commits after the method returns. Each calls the same
use cases the HTTP handlers call. Raising the kit's `DeadLetter` dead-letters the event at once
(an illegal transition); any other exception is retried with back-off, then dead-lettered.
"""

from __future__ import annotations

from generated.events.models import (
    SalesOrderCancelledEvent,
    SalesOrderConfirmedEvent,
    SalesOrderCreatedEvent,
)
from services.inventory.commands import reservations
from services.inventory.domain import Line
from services.platform import UnitOfWork


async def on_sales_order_created(uow: UnitOfWork, event: SalesOrderCreatedEvent) -> None:
    order = event.payload
    lines = [Line(item.product_id, item.quantity) for item in order.items]
    # Reserved, or the failure recorded, in the unit of work the kit commits with the inbox row.
    await reservations.reserve_order(uow, order.order_id, lines)


async def on_sales_order_confirmed(uow: UnitOfWork, event: SalesOrderConfirmedEvent) -> None:
    await reservations.confirm_order(uow, event.payload.order_id)


async def on_sales_order_cancelled(uow: UnitOfWork, event: SalesOrderCancelledEvent) -> None:
    await reservations.cancel_order(uow, event.payload.order_id)
