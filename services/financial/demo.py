"""The financial part of the demo data set: the rows whose ids the spec's examples use
(specs/openapi/financial.yaml) — the payment of the demo order ORD-2025-000042, approved and
then refunded, and its credit and debit in the ledger; the approved payments (and credits) of
ORD-2025-000043, whose invoice is number 1 of series 1, still pending (the examples issue, send
and cancel it), and of ORD-2025-000044, not invoiced yet (the example generates its invoice);
two suppliers (the second for the
deactivation example), two accounts payable (one to pay, one to cancel), the demo order's
account receivable (cancelled by the refund) and two manual ones (one to receive, one to
cancel). The accounts fell due in 2025, so they are `overdue`, as the job leaves them.

Loaded by embedded `erp up` and by `erp demo seed` (docs/adr/0008-docs-that-work.md);
idempotent: what exists already is kept. Payments are made only by the saga's events, so the
rows are written directly, as the events would have left them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from uuid import UUID

from services.financial import domain
from services.financial.domain import (
    AccountCategory,
    InvoiceStatus,
    PayableStatus,
    PaymentStatus,
    ReceivableStatus,
    SupplierStatus,
    TransactionCategory,
    TransactionType,
)
from services.financial.tables import (
    AccountPayable,
    AccountReceivable,
    Invoice,
    InvoiceSeries,
    LedgerTransaction,
    Payment,
    Supplier,
)
from services.platform import ServiceContext, format_amount

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
SUPPLIER = UUID("a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d")
SECOND_SUPPLIER = UUID("a2b3c4d5-e6f7-4a8b-9c0d-1e2f3a4b5c6d")
PAYABLE = UUID("b1c2d3e4-f5a6-4b7c-8d9e-0f1a2b3c4d5e")
SECOND_PAYABLE = UUID("c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f")
ORDER_RECEIVABLE = UUID("e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b")
RECEIVABLE = UUID("f1a2b3c4-d5e6-4f7a-8b9c-0d1e2f3a4b5c")
SECOND_RECEIVABLE = UUID("f2a3b4c5-d6e7-4f8a-9b0c-1d2e3f4a5b6c")
SUPPLIERS_JOINED = datetime(2025, 1, 10, 9, 0, tzinfo=UTC)

DEMO_INVOICE = UUID("9f8e7d6c-5b4a-4c3d-8e2f-1a0b9c8d7e6f")
INVOICED = datetime(2025, 2, 3, 10, 30, tzinfo=UTC)
SERIES = "1"
TAX_RATE = Decimal("0.18")


@dataclass(frozen=True)
class PaidOrder:
    payment: UUID
    order: UUID
    number: str
    amount: str
    credit: UUID
    placed: datetime


INVOICED_ORDER = PaidOrder(
    UUID("1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"),
    UUID("0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"),
    "ORD-2025-000043",
    "1250.00",
    UUID("5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d"),
    datetime(2025, 2, 3, 10, 0, tzinfo=UTC),
)
UNINVOICED_ORDER = PaidOrder(
    UUID("3e4f5a6b-7c8d-4e9f-8a0b-1c2d3e4f5a6b"),
    UUID("2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f60"),
    "ORD-2025-000044",
    "349.90",
    UUID("6b7c8d9e-0f1a-4b2c-9d3e-4f5a6b7c8d9e"),
    datetime(2025, 2, 5, 9, 0, tzinfo=UTC),
)


def _booking(
    identifier: UUID,
    kind: TransactionType,
    category: TransactionCategory,
    when: datetime,
    order: PaidOrder | None = None,
) -> LedgerTransaction:
    what = "Payment" if kind is TransactionType.CREDIT else "Refund"
    number = ORDER_NUMBER if order is None else order.number
    return LedgerTransaction(
        id=identifier,
        type=kind.value,
        category=category.value,
        amount=AMOUNT if order is None else order.amount,
        currency="BRL",
        reference=number,
        description=f"{what} of order {number}",
        payment_id=DEMO_PAYMENT if order is None else order.payment,
        order_id=DEMO_ORDER if order is None else order.order,
        occurred_at=when,
        booked_on=when.date(),
        booked_month=domain.month_start(when.date()),
    )


def _approved(order: PaidOrder) -> Payment:
    approved = order.placed + timedelta(seconds=1)
    return Payment(
        id=order.payment,
        order_id=order.order,
        order_number=order.number,
        customer_id=DEMO_CUSTOMER,
        amount=order.amount,
        currency="BRL",
        method="credit_card",
        status=PaymentStatus.APPROVED.value,
        gateway_reference=f"SIM-{order.order.hex[:16]}",
        created_at=order.placed,
        updated_at=approved,
        processed_at=approved,
    )


def _invoice() -> Invoice:
    order = INVOICED_ORDER
    money = domain.invoice_taxes(Decimal(order.amount), TAX_RATE)
    parts = domain.KeyParts(
        state_code="35",
        issued_on=INVOICED.date(),
        cnpj="11222333000181",
        series=int(SERIES),
        number=1,
        code=domain.numeric_code(DEMO_INVOICE.bytes, 1),
    )
    return Invoice(
        id=DEMO_INVOICE,
        order_id=order.order,
        order_number=order.number,
        customer_id=DEMO_CUSTOMER,
        series=SERIES,
        number=1,
        nfe_key=domain.nfe_key(parts),
        amount=format_amount(money.amount),
        taxes=format_amount(money.taxes),
        tax_rate=domain.format_rate(TAX_RATE),
        total=format_amount(money.total),
        currency="BRL",
        status=InvoiceStatus.PENDING.value,
        created_at=INVOICED,
        updated_at=INVOICED,
    )


def _at(day: date, hour: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def _supplier(
    identifier: UUID, name: str, cnpj: str, email: str | None, phone: str | None
) -> Supplier:
    return Supplier(
        id=identifier,
        name=name,
        cnpj=cnpj,
        email=email,
        phone=phone,
        status=SupplierStatus.ACTIVE.value,
        created_at=SUPPLIERS_JOINED,
        updated_at=SUPPLIERS_JOINED,
    )


def _payable(identifier: UUID, description: str, issued: date) -> AccountPayable:
    due = domain.due_date(issued, 30)
    return AccountPayable(
        id=identifier,
        supplier_id=SUPPLIER,
        description=description,
        category=AccountCategory.EXPENSE.value,
        amount="1250.00",
        currency="BRL",
        issue_date=issued,
        payment_terms_days=30,
        due_date=due,
        status=PayableStatus.OVERDUE.value,
        created_at=_at(issued, 9),
        updated_at=_at(date.fromordinal(due.toordinal() + 1)),
        version=2,
    )


def _receivable(
    identifier: UUID, description: str, amount: str, issued: date, terms: int
) -> AccountReceivable:
    due = domain.due_date(issued, terms)
    return AccountReceivable(
        id=identifier,
        customer_id=DEMO_CUSTOMER,
        customer_name="João Silva",
        description=description,
        category=AccountCategory.INCOME.value,
        amount=amount,
        currency="BRL",
        issue_date=issued,
        payment_terms_days=terms,
        due_date=due,
        status=ReceivableStatus.OVERDUE.value,
        created_at=_at(issued, 9),
        updated_at=_at(date.fromordinal(due.toordinal() + 1)),
        version=2,
    )


def _accounts() -> list[Supplier | AccountPayable | AccountReceivable]:
    """Suppliers first: the accounts payable name them."""
    return [
        _supplier(
            SUPPLIER,
            "Papelaria Central Ltda",
            "11222333000181",
            "contas@papelariacentral.com.br",
            "+55 11 3333-4444",
        ),
        _supplier(SECOND_SUPPLIER, "Transportes Rápidos S.A.", "44555666000181", None, None),
        _payable(PAYABLE, "Office paper, January", date(2025, 1, 10)),
        _payable(SECOND_PAYABLE, "Office paper, January (duplicate invoice)", date(2025, 1, 11)),
        AccountReceivable(
            id=ORDER_RECEIVABLE,
            customer_id=DEMO_CUSTOMER,
            customer_name=None,
            order_id=DEMO_ORDER,
            order_number=ORDER_NUMBER,
            description=f"Order {ORDER_NUMBER}",
            category=AccountCategory.INCOME.value,
            amount=AMOUNT,
            currency="BRL",
            issue_date=PLACED.date(),
            payment_terms_days=0,
            due_date=PLACED.date(),
            status=ReceivableStatus.CANCELLED.value,
            received_at=APPROVED,
            cancelled_at=REFUNDED,
            cancellation_reason=domain.PAYMENT_CANCEL_REASONS[PaymentStatus.REFUNDED],
            created_at=PLACED,
            updated_at=REFUNDED,
            version=3,
        ),
        _receivable(RECEIVABLE, "Consulting services, January", "3000.00", date(2025, 1, 20), 15),
        _receivable(SECOND_RECEIVABLE, "Training, February", "800.00", date(2025, 1, 25), 30),
    ]


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
        for order in (INVOICED_ORDER, UNINVOICED_ORDER):
            if await session.get(Payment, order.payment) is None:
                session.add(_approved(order))
                await session.flush()
        bookings = [
            _booking(CREDIT, TransactionType.CREDIT, TransactionCategory.SALES, APPROVED),
            _booking(DEBIT, TransactionType.DEBIT, TransactionCategory.REFUNDS, REFUNDED),
            *(
                _booking(
                    order.credit,
                    TransactionType.CREDIT,
                    TransactionCategory.SALES,
                    order.placed + timedelta(seconds=1),
                    order,
                )
                for order in (INVOICED_ORDER, UNINVOICED_ORDER)
            ),
        ]
        for booking in bookings:
            if await session.get(LedgerTransaction, booking.id) is None:
                session.add(booking)
        if await session.get(Invoice, DEMO_INVOICE) is None:
            session.add(_invoice())
        # Number 1 of the series is the demo invoice's: the next one generated gets 2.
        counter = await session.get(InvoiceSeries, SERIES)
        if counter is None:
            session.add(InvoiceSeries(series=SERIES, last_number=1))
        elif counter.last_number < 1:
            counter.last_number = 1
        for row in _accounts():
            if await session.get(type(row), row.id) is None:
                session.add(row)
                await session.flush()
        await uow.commit()
