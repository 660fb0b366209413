"""Event consumers of the financial service: one coroutine per event `financial.queue`
receives, named and typed by the generated `FinancialConsumers` Protocol (`service.py` checks
it).

The kit has validated the envelope, recorded the event in the inbox (a duplicate never reaches
these) and opened the unit of work it commits after the method returns. Raising `DeadLetter`
dead-letters the event at once; any other exception is retried with back-off, then
dead-lettered. `GATEWAY` is the payment-gateway adapter every payment goes through; charges
and refunds run after the commit (`payments.Charger`), and the recovery job (`jobs.py`) uses
the same adapter. A dispatched order is invoiced (ADR 0022).
"""

from __future__ import annotations

from generated.events.models import (
    LogisticsShipmentDispatchedEvent,
    SalesOrderCancelledEvent,
    SalesOrderCreatedEvent,
)
from services.financial.commands import invoices, payments
from services.financial.gateway import PaymentGateway, ResilientGateway, SimulatedGateway
from services.financial.issuer import issuer_of
from services.platform import UnitOfWork, current_context

GATEWAY: PaymentGateway = ResilientGateway(SimulatedGateway())


def charger() -> payments.Charger:
    """The running service's charger (its context: the consumers and jobs run inside it)."""
    return payments.Charger(current_context(), GATEWAY)


async def on_sales_order_created(uow: UnitOfWork, event: SalesOrderCreatedEvent) -> None:
    await payments.receive_order(uow, event, charger())


async def on_sales_order_cancelled(uow: UnitOfWork, event: SalesOrderCancelledEvent) -> None:
    await payments.cancel_order(uow, event, charger())
    # After the payment's part (its row lock taken first, as invoice generation takes it): an
    # invoice generated meanwhile is committed by then and found here.
    await invoices.cancel_for_order(uow, event.payload.order_id, event.payload.reason)


async def on_logistics_shipment_dispatched(
    uow: UnitOfWork, event: LogisticsShipmentDispatchedEvent
) -> None:
    await invoices.invoice_dispatched_order(
        uow, issuer_of(current_context()), event.payload.order_id
    )
