"""Event consumers of the sales service: one coroutine per event `sales.queue` receives, named
and typed by the generated `SalesConsumers` Protocol (`service.py` checks it).

The kit has validated the envelope, recorded the event in the inbox (a duplicate never reaches
these) and opened the unit of work it commits after the method returns. Raising `DeadLetter`
dead-letters the event at once; any other exception is retried with back-off, then
dead-lettered.

The product events keep the catalogue replica (ADR 0016): an older or repeated version changes
nothing; a newer one under another SKU is refused (inventory's SKUs are immutable). The saga's
answers (inventory's stock, financial's payment) go to `commands.orders`, which decides the
order (ADR 0018). logistics' news of the shipment goes to `commands.orders.record_shipment`,
which ships and completes the order (ADR 0022); one about an order sales never placed, or
about a pending one, is dead-lettered at once.
"""

from __future__ import annotations

from generated.events.models import (
    FinancialPaymentFailedEvent,
    FinancialPaymentProcessedEvent,
    FinancialPaymentRefundedEvent,
    InventoryProductCreatedEvent,
    InventoryProductDeletedEvent,
    InventoryProductUpdatedEvent,
    InventoryStockReleasedEvent,
    InventoryStockReservationFailedEvent,
    InventoryStockReservedEvent,
    LogisticsShipmentDeliveredEvent,
    LogisticsShipmentDispatchedEvent,
    LogisticsShipmentFailedEvent,
)
from services.platform import DeadLetter, UnitOfWork
from services.sales import domain
from services.sales.commands import orders, products
from services.sales.commands.orders import Answer, ShipmentNews
from services.sales.domain import PaymentStatus, Shipment, StockStatus


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


async def on_inventory_stock_reserved(uow: UnitOfWork, event: InventoryStockReservedEvent) -> None:
    answer = Answer("inventory", event.event_id)
    await orders.record_stock(uow, event.payload.order_id, StockStatus.RESERVED, answer)


async def on_inventory_stock_reservation_failed(
    uow: UnitOfWork, event: InventoryStockReservationFailedEvent
) -> None:
    answer = Answer("inventory", event.event_id, event.payload.reason)
    await orders.record_stock(uow, event.payload.order_id, StockStatus.FAILED, answer)


async def on_inventory_stock_released(uow: UnitOfWork, event: InventoryStockReleasedEvent) -> None:
    answer = Answer("inventory", event.event_id, str(event.payload.reason))
    await orders.record_stock(uow, event.payload.order_id, StockStatus.RELEASED, answer)


async def on_financial_payment_processed(
    uow: UnitOfWork, event: FinancialPaymentProcessedEvent
) -> None:
    payment = event.payload
    answer = Answer("financial", event.event_id, charged=(payment.amount, payment.currency))
    await orders.record_payment(uow, payment.order_id, PaymentStatus.APPROVED, answer)


async def on_financial_payment_failed(uow: UnitOfWork, event: FinancialPaymentFailedEvent) -> None:
    payment = event.payload
    answer = Answer("financial", event.event_id, payment.reason)
    await orders.record_payment(uow, payment.order_id, PaymentStatus.DECLINED, answer)


async def on_financial_payment_refunded(
    uow: UnitOfWork, event: FinancialPaymentRefundedEvent
) -> None:
    payment = event.payload
    answer = Answer("financial", event.event_id, charged=(payment.amount, payment.currency))
    await orders.record_payment(uow, payment.order_id, PaymentStatus.REFUNDED, answer)


async def on_logistics_shipment_dispatched(
    uow: UnitOfWork, event: LogisticsShipmentDispatchedEvent
) -> None:
    shipment = event.payload
    fact = Shipment(
        shipment.shipment_id,
        tracking_code=shipment.tracking_code,
        carrier_code=shipment.carrier_code,
        dispatched_at=shipment.dispatched_at,
    )
    what = f"Shipment dispatched with {shipment.carrier_code}"
    news = ShipmentNews(event.event_id, shipment.order_number, fact, what)
    await orders.record_shipment(uow, shipment.order_id, news)


async def on_logistics_shipment_delivered(
    uow: UnitOfWork, event: LogisticsShipmentDeliveredEvent
) -> None:
    shipment = event.payload
    fact = Shipment(
        shipment.shipment_id,
        tracking_code=shipment.tracking_code,
        delivered_at=shipment.delivered_at,
    )
    what = f"Shipment delivered to {shipment.received_by}"
    news = ShipmentNews(event.event_id, shipment.order_number, fact, what)
    await orders.record_shipment(uow, shipment.order_id, news)


async def on_logistics_shipment_failed(
    uow: UnitOfWork, event: LogisticsShipmentFailedEvent
) -> None:
    shipment = event.payload
    fact = Shipment(
        shipment.shipment_id,
        tracking_code=shipment.tracking_code,
        failed_at=shipment.failed_at,
        failure_reason=shipment.reason,
    )
    what = f"Shipment failed: {shipment.reason}"
    news = ShipmentNews(event.event_id, shipment.order_number, fact, what)
    await orders.record_shipment(uow, shipment.order_id, news)
