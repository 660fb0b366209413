"""Event consumers of the financial service: one coroutine per event `financial.queue`
receives, named and typed by the generated `FinancialConsumers` Protocol (`service.py` checks
it).

The kit has validated the envelope, recorded the event in the inbox (a duplicate never reaches
these) and opened the unit of work it commits after the method returns. Raising `DeadLetter`
dead-letters the event at once; any other exception is retried with back-off, then
dead-lettered. `GATEWAY` is the payment-gateway adapter every payment goes through.
"""

from __future__ import annotations

from generated.events.models import SalesOrderCancelledEvent, SalesOrderCreatedEvent
from services.financial.commands import invoices, payments
from services.financial.gateway import PaymentGateway, ResilientGateway, SimulatedGateway
from services.platform import UnitOfWork

GATEWAY: PaymentGateway = ResilientGateway(SimulatedGateway())


async def on_sales_order_created(uow: UnitOfWork, event: SalesOrderCreatedEvent) -> None:
    await payments.create_and_charge(uow, event.payload, GATEWAY)


async def on_sales_order_cancelled(uow: UnitOfWork, event: SalesOrderCancelledEvent) -> None:
    order = event.payload
    await payments.cancel_order(uow, order.order_id, order.reason, GATEWAY)
    # After the payment (its row lock taken first, as invoice generation takes it): an invoice
    # generated meanwhile is committed by then and found here.
    await invoices.cancel_for_order(uow, order.order_id, order.reason)
