"""Invoices of paid orders, NF-e style (ADR 0014).

`generate` numbers the invoice from its series' counter row in the request's own transaction
(`UPDATE ... RETURNING`: concurrent invoices of a series wait for each other, a rollback gives
the number back, so numbers are unique and gap-free), works out the taxes and the access key,
and leaves it `pending`; `issue`, `send` and `cancel` move it along `domain`'s status machine
(an illegal move is a 409). `cancel_for_order` is `sales.order.cancelled`'s part: there an
invoice that can no longer be cancelled is dead-lettered, for a person to issue a return
invoice. `invoice_dispatched_order` is `logistics.shipment.dispatched`'s part: the order's
invoice generated and issued without a person (ADR 0022).
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from uuid import UUID, uuid4

from sqlmodel import col, select

from generated.events import publishers as events
from generated.events.models import (
    FinancialInvoiceCancelledPayload,
    FinancialInvoiceGeneratedPayload,
)
from generated.financial import models
from services.financial import domain
from services.financial.domain import InvoiceStatus, KeyParts, PaymentStatus
from services.financial.issuer import Issuer
from services.financial.tables import (
    Invoice,
    OrderCancellation,
    Payment,
    metadata,
)
from services.platform import (
    DeadLetter,
    Problem,
    UnitOfWork,
    flush_unique,
    format_amount,
    resource_not_found,
    take_next_number,
    utc_now,
)

log = logging.getLogger("services.financial")


def invoice_model(invoice: Invoice) -> models.Invoice:
    return models.Invoice.model_validate(invoice, from_attributes=True)


def _label(invoice: Invoice) -> str:
    return f"Invoice {invoice.number} of series {invoice.series}"


async def _live_invoice(uow: UnitOfWork, order_id: UUID) -> Invoice | None:
    statement = (
        select(Invoice)
        .where(col(Invoice.order_id) == order_id)
        .where(col(Invoice.status) != InvoiceStatus.CANCELLED.value)
        .with_for_update()
    )
    return (await uow.session.scalars(statement)).first()


async def _next_number(uow: UnitOfWork, series: str) -> int:
    """The series' next number, taken in this transaction: the counter row stays locked until
    it ends, so a concurrent invoice of the series waits and gets the number after."""
    counters = metadata.tables["invoice_series"]
    number = await take_next_number(
        uow.session, uow.dialect, counters, {"series": series}, "last_number"
    )
    if number > domain.MAX_INVOICE_NUMBER:
        raise Problem(409, detail=f"Series {series} has used every number; configure another.")
    return number


async def _locked_payment(uow: UnitOfWork, order_id: UUID) -> Payment | None:
    statement = select(Payment).where(col(Payment.order_id) == order_id).with_for_update()
    return (await uow.session.scalars(statement)).first()


async def generate(uow: UnitOfWork, issuer: Issuer, body: models.InvoiceCreate) -> models.Invoice:
    """The `pending` invoice of an order whose payment is approved and that is not cancelled.
    The payment row is locked meanwhile, as the cancellation's transaction locks it: a
    cancellation committed first is seen here; one that comes after finds this invoice."""
    payment = await _locked_payment(uow, body.order_id)
    if payment is None:
        raise resource_not_found("The payment of order", body.order_id)
    if payment.status != PaymentStatus.APPROVED.value:
        raise Problem(
            409,
            detail=f"The payment of order {payment.order_number} is {payment.status}: "
            "only an order with an approved payment is invoiced.",
        )
    # A cancelled order's payment stays approved until its refund is recorded (after the
    # cancellation's commit): the cancellation itself is what refuses the invoice.
    if await uow.session.get(OrderCancellation, body.order_id) is not None:
        raise Problem(409, detail=f"Order {payment.order_number} is cancelled: it is not invoiced.")
    existing = await _live_invoice(uow, body.order_id)
    if existing is not None:
        raise Problem(
            409, detail=f"Order {payment.order_number} already has {_label(existing).lower()}."
        )
    return invoice_model(await _new_invoice(uow, issuer, payment))


async def _new_invoice(uow: UnitOfWork, issuer: Issuer, payment: Payment) -> Invoice:
    """The `pending` invoice of the payment's order, numbered in its series."""
    number = await _next_number(uow, issuer.series)
    now = utc_now()
    invoice_id = uuid4()
    money = domain.invoice_taxes(Decimal(payment.amount), issuer.tax_rate)
    key = domain.nfe_key(
        KeyParts(
            state_code=issuer.state_code,
            issued_on=now.date(),
            cnpj=issuer.cnpj,
            series=int(issuer.series),
            number=number,
            code=domain.numeric_code(invoice_id.bytes, number),
        )
    )
    invoice = Invoice(
        id=invoice_id,
        order_id=payment.order_id,
        order_number=payment.order_number,
        customer_id=payment.customer_id,
        series=issuer.series,
        number=number,
        nfe_key=key,
        amount=format_amount(money.amount),
        taxes=format_amount(money.taxes),
        tax_rate=domain.format_rate(issuer.tax_rate),
        total=format_amount(money.total),
        currency=payment.currency,
        status=InvoiceStatus.PENDING.value,
        created_at=now,
        updated_at=now,
    )
    uow.session.add(invoice)
    # The partial unique index on order_id is the last guard (SQLite ignores FOR UPDATE).
    await flush_unique(
        uow.session, Problem(409, detail=f"Order {payment.order_number} already has an invoice.")
    )
    return invoice


class UnknownOrderError(Exception):
    """A dispatch of an order whose `sales.order.created` financial has not recorded (yet):
    the kit retries it, then dead-letters it."""


async def invoice_dispatched_order(uow: UnitOfWork, issuer: Issuer, order_id: UUID) -> None:
    """logistics dispatched the order: its invoice is generated and issued at once, so
    `financial.invoice.generated` goes out (caused by the dispatch). Once per order: an order
    that has an invoice already, live or cancelled by staff, gets none (a redelivered or
    repeated dispatch, or a retried shipment's). None either for an order cancelled or whose
    payment is not approved (the cancellation raced the dispatch); that is logged."""
    payment = await _locked_payment(uow, order_id)
    if payment is None:
        raise UnknownOrderError(f"order {order_id} has no payment: financial never saw it")
    if payment.status != PaymentStatus.APPROVED.value:
        log.info("order %s dispatched with its payment %s: not invoiced", order_id, payment.status)
        return
    if await uow.session.get(OrderCancellation, order_id) is not None:
        log.info("order %s dispatched after its cancellation: not invoiced", order_id)
        return
    existing = await uow.session.scalars(
        select(Invoice.id).where(col(Invoice.order_id) == order_id)
    )
    if existing.first() is not None:
        log.info("order %s has its invoice already: dispatch changes nothing", order_id)
        return
    invoice = await _new_invoice(uow, issuer, payment)
    _issue(uow, invoice, utc_now())


async def _locked(uow: UnitOfWork, invoice_id: UUID) -> Invoice:
    statement = select(Invoice).where(col(Invoice.id) == invoice_id).with_for_update()
    invoice = (await uow.session.scalars(statement)).first()
    if invoice is None:
        raise resource_not_found("Invoice", invoice_id)
    return invoice


def _problem(invoice: Invoice, target: InvoiceStatus, now: datetime) -> str | None:
    return domain.invoice_transition_problem(
        InvoiceStatus(invoice.status), target, issued_at=invoice.issued_at, now=now
    )


def _move(invoice: Invoice, target: InvoiceStatus, now: datetime) -> None:
    problem = _problem(invoice, target, now)
    if problem is not None:
        raise Problem(409, detail=f"{_label(invoice)} {problem}.")
    invoice.status = target.value
    invoice.updated_at = now


async def issue(uow: UnitOfWork, invoice_id: UUID) -> models.Invoice:
    invoice = await _locked(uow, invoice_id)
    _issue(uow, invoice, utc_now())
    return invoice_model(invoice)


def _issue(uow: UnitOfWork, invoice: Invoice, now: datetime) -> None:
    """`pending → issued` and `financial.invoice.generated`: the event means "issued", the
    invoice's fiscal existence (generation alone is a draft staff can still look over)."""
    _move(invoice, InvoiceStatus.ISSUED, now)
    invoice.issued_at = now
    events.publish_financial_invoice_generated(
        uow,
        FinancialInvoiceGeneratedPayload(
            **_event_fields(invoice), amount=invoice.amount, taxes=invoice.taxes, issued_at=now
        ),
    )


async def send(uow: UnitOfWork, invoice_id: UUID) -> models.Invoice:
    invoice = await _locked(uow, invoice_id)
    now = utc_now()
    _move(invoice, InvoiceStatus.SENT, now)
    invoice.sent_at = now
    return invoice_model(invoice)


def _cancelled(uow: UnitOfWork, invoice: Invoice, reason: str, now: datetime) -> None:
    invoice.status = InvoiceStatus.CANCELLED.value
    invoice.updated_at = now
    invoice.cancelled_at = now
    invoice.reason = reason
    events.publish_financial_invoice_cancelled(
        uow,
        FinancialInvoiceCancelledPayload(**_event_fields(invoice), reason=reason, cancelled_at=now),
    )


async def cancel(uow: UnitOfWork, invoice_id: UUID, body: models.InvoiceCancel) -> models.Invoice:
    invoice = await _locked(uow, invoice_id)
    now = utc_now()
    _move(invoice, InvoiceStatus.CANCELLED, now)
    _cancelled(uow, invoice, body.reason, now)
    return invoice_model(invoice)


async def cancel_for_order(uow: UnitOfWork, order_id: UUID, reason: str) -> None:
    """The order was cancelled: so is its invoice, if it has one that is not cancelled yet. One
    past the cancellation window is dead-lettered (with the rest of the event's effects): a
    person must issue a return invoice; a replay after that finds it cancelled."""
    invoice = await _live_invoice(uow, order_id)
    if invoice is None:
        return
    now = utc_now()
    problem = _problem(invoice, InvoiceStatus.CANCELLED, now)
    if problem is not None:
        raise DeadLetter(f"order {order_id}: {_label(invoice).lower()} {problem}")
    _cancelled(uow, invoice, reason, now)


def _event_fields(invoice: Invoice) -> dict[str, object]:
    return {
        "invoice_id": invoice.id,
        "order_id": invoice.order_id,
        "order_number": invoice.order_number,
        "customer_id": invoice.customer_id,
        "series": invoice.series,
        "number": invoice.number,
        "nfe_key": invoice.nfe_key,
        "total": invoice.total,
        "currency": invoice.currency,
    }
