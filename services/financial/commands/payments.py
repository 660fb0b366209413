"""Payments, the financial side of the order saga (ADR 0012).

`sales.order.created` creates the order's payment and charges it through the gateway in the
consumer's unit of work: the payment row (unique per order) and the inbox row commit together
with the outcome, its ledger credit and its event, or not at all. A crash mid-way rolls all of
it back and the redelivered event charges again with the same idempotency key (the order id),
so the gateway gives its first answer again instead of charging twice.

`sales.order.cancelled` refunds an approved payment (ledger debit, `financial.payment.refunded`),
cancels one not charged yet, and, arriving before the order itself, leaves a cancellation that
makes the late `sales.order.created` charge nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from sqlalchemy import text
from sqlmodel import col, select

from generated.events import publishers as events
from generated.events.models import (
    FinancialPaymentFailedPayload,
    FinancialPaymentProcessedPayload,
    FinancialPaymentRefundedPayload,
    SalesOrderCreatedPayload,
)
from services.financial import domain
from services.financial.commands import accounts
from services.financial.domain import (
    CancelAction,
    DeclineReason,
    OrderFacts,
    PaymentStatus,
    TransactionCategory,
    TransactionType,
)
from services.financial.gateway import Charge, GatewayUnavailableError, PaymentGateway, Refund
from services.financial.tables import LedgerTransaction, OrderCancellation, Payment, metadata
from services.platform import (
    DeadLetter,
    UnitOfWork,
    format_amount,
    insert_ignoring_conflicts,
    utc_now,
)

log = logging.getLogger("services.financial")


async def _lock_order(uow: UnitOfWork, order_id: UUID) -> None:
    """Serialise the deliveries of one order (until the transaction ends). A row lock cannot do
    it: a cancellation arriving while the order's charge is with the gateway would not see the
    uncommitted payment, record a tombstone nobody reads any more, and leave the money taken.
    PostgreSQL: a transaction-scoped advisory lock keyed by the order id; SQLite (embedded)
    allows one writer at a time, so the later delivery fails at its write and is retried."""
    if uow.dialect == "postgresql":
        key = int.from_bytes(order_id.bytes[:8], "big", signed=True)
        await uow.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


async def _payment_of(uow: UnitOfWork, order_id: UUID) -> Payment | None:
    statement = select(Payment).where(col(Payment.order_id) == order_id).with_for_update()
    return (await uow.session.scalars(statement)).first()


def _facts(payment: Payment) -> OrderFacts:
    return OrderFacts(Decimal(payment.amount), payment.currency, payment.method)


def _move(payment: Payment, target: PaymentStatus, now: datetime) -> None:
    try:
        payment.status = domain.transition(PaymentStatus(payment.status), target).value
    except domain.IllegalTransitionError as error:
        raise DeadLetter(f"order {payment.order_id}: {error}") from error
    payment.updated_at = now


async def create_and_charge(
    uow: UnitOfWork, order: SalesOrderCreatedPayload, gateway: PaymentGateway
) -> Payment:
    """The order's payment, charged once. A repeat of the same order changes nothing; one that
    states another amount, currency or method is another order under the same id: dead-lettered."""
    facts = OrderFacts(Decimal(order.total), order.currency, order.payment_method.value)
    await _lock_order(uow, order.order_id)
    existing = await _payment_of(uow, order.order_id)
    if existing is not None:
        differences = _facts(existing).differences(facts)
        if differences:
            raise DeadLetter(
                f"order {order.order_id} already has a payment with another "
                + ", ".join(differences)
            )
        log.info("order %s already has its payment (%s)", order.order_id, existing.status)
        return existing

    now = utc_now()
    payment = Payment(
        order_id=order.order_id,
        order_number=order.order_number,
        customer_id=order.customer_id,
        amount=format_amount(facts.amount),
        currency=facts.currency,
        method=facts.method,
        status=PaymentStatus.PENDING.value,
        created_at=now,
        updated_at=now,
    )
    uow.session.add(payment)
    # The unique order_id is the last guard (SQLite, or code that skipped the lock): a second
    # insert fails, the kit retries the delivery, and the retry finds this payment.
    await uow.session.flush()

    if await uow.session.get(OrderCancellation, order.order_id) is not None:
        _move(payment, PaymentStatus.CANCELLED, now)
        payment.cancelled_at = now
        log.info("order %s was cancelled before it arrived: nothing charged", order.order_id)
        await accounts.follow_payment(uow, payment)
        return payment

    _move(payment, PaymentStatus.PROCESSING, now)
    charge = Charge(str(order.order_id), facts.amount, facts.currency, facts.method)
    try:
        result = await gateway.charge(charge)
        approved, reference, reason = result.approved, result.reference, result.decline_reason
    except GatewayUnavailableError:
        approved, reference, reason = False, None, DeclineReason.GATEWAY_UNAVAILABLE

    processed_at = utc_now()
    payment.processed_at = processed_at
    payment.gateway_reference = reference
    if approved and reference is not None:
        _move(payment, PaymentStatus.APPROVED, processed_at)
        _book(uow, payment, TransactionType.CREDIT, processed_at)
        events.publish_financial_payment_processed(
            uow,
            FinancialPaymentProcessedPayload(
                **_event_fields(payment), gateway_reference=reference, processed_at=processed_at
            ),
        )
        await accounts.follow_payment(uow, payment)
        return payment
    decline = reason or DeclineReason.CARD_DECLINED
    _move(payment, PaymentStatus.DECLINED, processed_at)
    payment.failure_reason = decline.value
    events.publish_financial_payment_failed(
        uow,
        FinancialPaymentFailedPayload(
            **_event_fields(payment), reason=decline.value, processed_at=processed_at
        ),
    )
    await accounts.follow_payment(uow, payment)
    return payment


async def cancel_order(
    uow: UnitOfWork, order_id: UUID, reason: str, gateway: PaymentGateway
) -> Payment | None:
    """Refund, cancel or leave the order's payment as `domain.on_order_cancelled` says; with no
    payment yet, record the cancellation for the late `sales.order.created`."""
    await _lock_order(uow, order_id)
    payment = await _payment_of(uow, order_id)
    now = utc_now()
    if payment is None:
        table = metadata.tables["order_cancellations"]
        values = {"order_id": order_id, "reason": reason, "cancelled_at": now}
        await uow.session.execute(insert_ignoring_conflicts(uow.dialect, table, values))
        log.info("order %s cancelled before its payment: recorded", order_id)
        return None
    action = domain.on_order_cancelled(PaymentStatus(payment.status))
    if action is CancelAction.NOTHING:
        log.info("order %s cancelled: payment is %s, nothing to do", order_id, payment.status)
    elif action is CancelAction.CANCEL:
        _move(payment, PaymentStatus.CANCELLED, now)
        payment.cancelled_at = now
    else:
        refund = Refund(
            idempotency_key=f"refund-{order_id}",
            charge_reference=payment.gateway_reference or "",
            amount=Decimal(payment.amount),
            currency=payment.currency,
        )
        # No answer after the retries raises: the kit retries the event, then dead-letters it.
        payment.refund_reference = await gateway.refund(refund)
        _move(payment, PaymentStatus.REFUNDED, now)
        payment.refunded_at = now
        _book(uow, payment, TransactionType.DEBIT, now)
        events.publish_financial_payment_refunded(
            uow,
            FinancialPaymentRefundedPayload(
                **_event_fields(payment), reason=reason, refunded_at=now
            ),
        )
    await accounts.follow_payment(uow, payment)
    return payment


def _event_fields(payment: Payment) -> dict[str, object]:
    return {
        "order_id": payment.order_id,
        "order_number": payment.order_number,
        "payment_id": payment.id,
        "customer_id": payment.customer_id,
        "amount": payment.amount,
        "currency": payment.currency,
        "method": payment.method,
    }


def _book(uow: UnitOfWork, payment: Payment, kind: TransactionType, when: datetime) -> None:
    """The ledger row of an approved payment (credit) or of its refund (debit)."""
    credit = kind is TransactionType.CREDIT
    category = TransactionCategory.SALES if credit else TransactionCategory.REFUNDS
    what = "Payment" if credit else "Refund"
    day = when.date()
    uow.session.add(
        LedgerTransaction(
            type=kind.value,
            category=category.value,
            amount=payment.amount,
            currency=payment.currency,
            reference=payment.order_number,
            description=f"{what} of order {payment.order_number}",
            payment_id=payment.id,
            order_id=payment.order_id,
            occurred_at=when,
            booked_on=day,
            booked_month=domain.month_start(day),
        )
    )
