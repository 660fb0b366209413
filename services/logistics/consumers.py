"""Event consumers of the logistics service: one coroutine per event `logistics.queue`
receives, named and typed by the generated `LogisticsConsumers` Protocol (`service.py` checks
it). The kit has validated the envelope (routing key, schema, producer), dropped a redelivered
event (inbox) and opened the unit of work it commits after the method returns; `DeadLetter`
dead-letters at once.

The saga's events create and move the order's shipment (`commands.shipments`, ADR 0020). A
shipment's origin is the configured warehouse: the consumers get only the unit of work, so the
start-up hook `use_warehouse` hands them the running service's setting.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from generated.events.models import (
    FinancialPaymentProcessedEvent,
    SalesOrderCancelledEvent,
    SalesOrderConfirmedEvent,
)
from services.logistics import domain
from services.logistics.commands import shipments
from services.platform import DeadLetter, ServiceContext, UnitOfWork, WarehouseAddress

_warehouse = [WarehouseAddress()]  # the process's one setting, replaced at start-up


async def use_warehouse(ctx: ServiceContext) -> None:
    """Start-up hook: shipments leave from the warehouse the settings name."""
    _warehouse[0] = ctx.settings.warehouse_address


@contextmanager
def illegal_moves_dead_lettered(event_name: str) -> Iterator[None]:
    """A move the status machine refuses would be refused again on every retry: dead-letter
    the event at once, naming the move (the commands check the status first, so this is the
    guard for a machine and a command that drift apart)."""
    try:
        yield
    except domain.IllegalShipmentMoveError as error:
        raise DeadLetter(f"{event_name}: {error}") from None


async def on_sales_order_confirmed(uow: UnitOfWork, event: SalesOrderConfirmedEvent) -> None:
    origin = shipments.origin_address(_warehouse[0])
    with illegal_moves_dead_lettered(event.event_name):
        await shipments.create_for_order(
            uow, event.payload, origin, event.event_id, event.correlation_id
        )


async def on_sales_order_cancelled(uow: UnitOfWork, event: SalesOrderCancelledEvent) -> None:
    order = event.payload
    with illegal_moves_dead_lettered(event.event_name):
        await shipments.record_cancellation(uow, order.order_id, order.reason, event.event_id)


async def on_financial_payment_processed(
    uow: UnitOfWork, event: FinancialPaymentProcessedEvent
) -> None:
    with illegal_moves_dead_lettered(event.event_name):
        await shipments.record_payment(uow, event.payload.order_id, event.event_id)
