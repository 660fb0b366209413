"""Event consumers of the sales service: one coroutine per event `sales.queue` receives, named
and typed by the generated `SalesConsumers` Protocol (`service.py` checks it).

The kit has validated the envelope, recorded the event in the inbox (a duplicate never reaches
these) and opened the unit of work it commits after the method returns. Raising `DeadLetter`
dead-letters the event at once; any other exception is retried with back-off, then
dead-lettered.

The product events keep the catalogue replica (ADR 0016): an older or repeated version changes
nothing; a newer one under another SKU is refused (inventory's SKUs are immutable).
"""

from __future__ import annotations

from generated.events.models import (
    InventoryProductCreatedEvent,
    InventoryProductDeletedEvent,
    InventoryProductUpdatedEvent,
)
from services.platform import DeadLetter, UnitOfWork
from services.sales import domain
from services.sales.commands import products


async def _replicate(uow: UnitOfWork, row: products.ReplicaRow) -> None:
    if await products.replicate(uow, row) is domain.ReplicaChange.SKU_CHANGED:
        raise DeadLetter(
            f"product {row.product_id}: version {row.version} changes its SKU, which is immutable"
        )


async def on_inventory_product_created(
    uow: UnitOfWork, event: InventoryProductCreatedEvent
) -> None:
    await _replicate(uow, products.row_of_event(event.payload, deleted=False))


async def on_inventory_product_updated(
    uow: UnitOfWork, event: InventoryProductUpdatedEvent
) -> None:
    await _replicate(uow, products.row_of_event(event.payload, deleted=False))


async def on_inventory_product_deleted(
    uow: UnitOfWork, event: InventoryProductDeletedEvent
) -> None:
    await _replicate(uow, products.row_of_event(event.payload, deleted=True))
