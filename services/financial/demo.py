"""The financial part of the demo data set: the rows whose ids the spec's examples use
(specs/openapi/financial.yaml) — the payment of the demo order ORD-2025-000042, approved and
then refunded, and its credit and debit in the ledger.

Loaded by embedded `erp up` and by `erp demo seed` (docs/adr/0008-docs-that-work.md);
idempotent: what exists already is kept. Payments are made only by the saga's events, so the
rows are written directly, as the events would have left them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from services.financial import domain
from services.financial.domain import PaymentStatus, TransactionCategory, TransactionType
from services.financial.tables import LedgerTransaction, Payment
from services.platform import ServiceContext

DEMO_PAYMENT = UUID("d4e5f6a7-b8c9-4d0e-8f1a-2b3c4d5e6f70")
DEMO_ORDER = UUID("c7d8e9f0-1a2b-4c3d-8e4f-5a6b7c8d9e0f")
DEMO_CUSTOMER = UUID("b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e")
CREDIT = UUID("f6a7b8c9-d0e1-4f2a-8b3c-4d5e6f708192")
DEBIT = UUID("e5f6a7b8-c9d0-4e1f-8a2b-3c4d5e6f7081")
ORDER_NUMBER = "ORD-2025-000042"
AMOUNT = "724.80"
PLACED = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
APPROVED = datetime(2025, 1, 15, 12, 0, 1, tzinfo=UTC)
REFUNDED = datetime(2025, 1, 15, 14, 0, tzinfo=UTC)


def _booking(
    identifier: UUID, kind: TransactionType, category: TransactionCategory, when: datetime
) -> LedgerTransaction:
    what = "Payment" if kind is TransactionType.CREDIT else "Refund"
    return LedgerTransaction(
        id=identifier,
        type=kind.value,
        category=category.value,
        amount=AMOUNT,
        currency="BRL",
        reference=ORDER_NUMBER,
        description=f"{what} of order {ORDER_NUMBER}",
        payment_id=DEMO_PAYMENT,
        order_id=DEMO_ORDER,
        occurred_at=when,
        booked_on=when.date(),
        booked_month=domain.month_start(when.date()),
    )


async def seed_demo(ctx: ServiceContext) -> None:
    async with ctx.unit_of_work() as uow:
        session = uow.session
        if await session.get(Payment, DEMO_PAYMENT) is None:
            session.add(
                Payment(
                    id=DEMO_PAYMENT,
                    order_id=DEMO_ORDER,
                    order_number=ORDER_NUMBER,
                    customer_id=DEMO_CUSTOMER,
                    amount=AMOUNT,
                    currency="BRL",
                    method="pix",
                    status=PaymentStatus.REFUNDED.value,
                    gateway_reference="SIM-c7d8e9f01a2b4c3d",
                    refund_reference="SIMR-refundc7d8e9f01a",
                    created_at=PLACED,
                    updated_at=REFUNDED,
                    processed_at=APPROVED,
                    refunded_at=REFUNDED,
                )
            )
            await session.flush()
        bookings = [
            _booking(CREDIT, TransactionType.CREDIT, TransactionCategory.SALES, APPROVED),
            _booking(DEBIT, TransactionType.DEBIT, TransactionCategory.REFUNDS, REFUNDED),
        ]
        for booking in bookings:
            if await session.get(LedgerTransaction, booking.id) is None:
                session.add(booking)
        await uow.commit()
