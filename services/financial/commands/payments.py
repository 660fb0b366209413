"""Payments, the financial side of the order saga (ADR 0012, "Charging outside the
transaction").

`sales.order.created` (`receive_order`, in the consumer's unit of work with its inbox row)
makes the order's payment `pending`, one per order, and commits. The charge runs after that
commit, outside any transaction (`charge`):

1. the claim: `pending → processing`, committed, so the API shows it while the gateway works;
2. the gateway call with the order id as idempotency key, no transaction or lock held;
3. the outcome in a short transaction, guarded by the status (`UPDATE ... WHERE status =
   'processing'`): `approve` (ledger credit, `financial.payment.processed`) or `decline`
   (`financial.payment.failed`). A second charger of the same payment loses the guard and
   records nothing, so each payment announces exactly one outcome.

`sales.order.cancelled` (`cancel_order`) records the order's cancellation, then by the
payment's status: `pending` → `cancelled` (the gateway was never asked); `processing` → the
outcome decides (an approval is refunded at once, a decline stays declined); `approved` →
`refund` after the commit (the gateway's refund outside any transaction, then `record_refund`
guarded by `status = 'approved'`: ledger debit, `financial.payment.refunded`). With no payment
yet, the late order's payment is cancelled at once and nothing is charged.

A crash between these steps leaves a payment `pending` or `processing`, or `approved` for a
cancelled order: `recover` (the periodic job, `jobs.py`) charges or refunds those older than
`STALE_AFTER` again with the same idempotency keys — the gateway gives its first answer again
and takes (or returns) the money once.

Events of the deferred steps carry the cause they would have had in the consumer: the
`sales.order.created` (processed / failed) or `sales.order.cancelled` (refunded) event, whose
ids the payment and the cancellation keep.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Final
from uuid import UUID

from sqlalchemy import ColumnElement, text, update
from sqlmodel import col, select

from generated.events import publishers as events
from generated.events.models import (
    FinancialPaymentFailedPayload,
    FinancialPaymentProcessedPayload,
    FinancialPaymentRefundedPayload,
    FinancialPaymentRequestedPayload,
    SalesOrderCancelledEvent,
    SalesOrderCreatedEvent,
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
from services.financial.gateway import (
    Charge,
    ChargeResult,
    GatewayUnavailableError,
    PaymentGateway,
    Refund,
)
from services.financial.tables import LedgerTransaction, OrderCancellation, Payment, metadata
from services.platform import (
    DeadLetter,
    ServiceContext,
    UnitOfWork,
    format_amount,
    in_conversation,
    insert_ignoring_conflicts,
    utc_now,
)

log = logging.getLogger("services.financial")

# Longer than a charge can take under the gateway's retry policy (3 attempts of at most 5 s
# and their back-off): a payment untouched for so long has lost its charger.
STALE_AFTER: Final = timedelta(seconds=60)
RECOVERY_BATCH: Final = 20


@dataclass(frozen=True, slots=True)
class Charger:
    """What charges and refunds after a consumer's commit: the service's context (each step
    opens its own unit of work) and the gateway."""

    ctx: ServiceContext
    gateway: PaymentGateway


@dataclass(frozen=True, slots=True)
class Recovered:
    """What one run of `recover` took up again."""

    charged: int
    refunded: int


# ------------------------------------------------------------------ the consumers' transactions


async def receive_order(
    uow: UnitOfWork, event: SalesOrderCreatedEvent, charger: Charger
) -> Payment:
    """The order's payment, `pending`, charged after the commit. A repeat of the same order
    changes nothing; one that states another amount, currency or method is another order
    under the same id: dead-lettered."""
    order = event.payload
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
        customer_email=order.customer_email,
        amount=format_amount(facts.amount),
        currency=facts.currency,
        method=facts.method,
        status=PaymentStatus.PENDING.value,
        created_at=now,
        updated_at=now,
        correlation_id=event.correlation_id,
        order_event_id=event.event_id,
    )
    uow.session.add(payment)
    # The unique order_id is the last guard (SQLite, or code that skipped the lock): a second
    # insert fails, the kit retries the delivery, and the retry finds this payment.
    await uow.session.flush()

    if await uow.session.get(OrderCancellation, order.order_id) is not None:
        _transition(payment, PaymentStatus.CANCELLED, now)
        payment.cancelled_at = now
        log.info("order %s was cancelled before it arrived: nothing charged", order.order_id)
        await accounts.follow_payment(uow, payment)
        return payment
    await accounts.follow_payment(uow, payment)
    events.publish_financial_payment_requested(
        uow, FinancialPaymentRequestedPayload(**_event_fields(payment), requested_at=now)
    )
    uow.after_commit(partial(charge, charger, payment.id))
    return payment


async def cancel_order(
    uow: UnitOfWork, event: SalesOrderCancelledEvent, charger: Charger
) -> Payment | None:
    """Record the order's cancellation, then cancel, refund (after the commit) or leave the
    payment as `domain.on_order_cancelled` says."""
    order_id = event.payload.order_id
    await _lock_order(uow, order_id)
    payment = await _payment_of(uow, order_id)
    now = utc_now()
    values = {
        "order_id": order_id,
        "reason": event.payload.reason,
        "cancelled_at": now,
        "correlation_id": event.correlation_id,
        "event_id": event.event_id,
    }
    table = metadata.tables["order_cancellations"]
    await uow.session.execute(insert_ignoring_conflicts(uow.dialect, table, values))
    if payment is None:
        log.info("order %s cancelled before its payment: recorded", order_id)
        return None
    action = domain.on_order_cancelled(PaymentStatus(payment.status))
    if action is CancelAction.CANCEL:
        _transition(payment, PaymentStatus.CANCELLED, now)
        payment.cancelled_at = now
    elif action is CancelAction.REFUND:
        uow.after_commit(partial(refund, charger, payment.id))
    elif action is CancelAction.AWAIT_OUTCOME:
        log.info("order %s cancelled during its charge: the outcome decides", order_id)
    else:
        log.info("order %s cancelled: payment is %s, nothing to do", order_id, payment.status)
    await accounts.follow_payment(uow, payment)
    return payment


async def _lock_order(uow: UnitOfWork, order_id: UUID) -> None:
    """Serialise the two consumers' transactions of one order (until the transaction ends),
    so that an order and its cancellation never miss each other: a cancellation committed
    first is seen by the order's transaction, a payment committed first by the
    cancellation's. Held for those short transactions only, never over a gateway call.
    PostgreSQL: a transaction-scoped advisory lock keyed by the order id; SQLite (embedded)
    allows one writer at a time."""
    if uow.dialect == "postgresql":
        key = int.from_bytes(order_id.bytes[:8], "big", signed=True)
        await uow.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


async def _payment_of(uow: UnitOfWork, order_id: UUID) -> Payment | None:
    statement = select(Payment).where(col(Payment.order_id) == order_id).with_for_update()
    return (await uow.session.scalars(statement)).first()


def _facts(payment: Payment) -> OrderFacts:
    return OrderFacts(Decimal(payment.amount), payment.currency, payment.method)


def _transition(payment: Payment, target: PaymentStatus, now: datetime) -> None:
    try:
        payment.status = domain.transition(PaymentStatus(payment.status), target).value
    except domain.IllegalTransitionError as error:
        raise DeadLetter(f"order {payment.order_id}: {error}") from error
    payment.updated_at = now


# ------------------------------------------------------------------ after the commit


async def charge(charger: Charger, payment_id: UUID) -> None:
    """Claim a `pending` payment, charge it, record the outcome (module docstring); nothing
    when it is no longer pending (cancelled meanwhile, or claimed by the recovery job)."""
    claimed = await _claim(charger.ctx, col(Payment.id) == payment_id, PaymentStatus.PENDING)
    for payment in claimed:
        await _charge_claimed(charger, payment)


async def _claim(
    ctx: ServiceContext, which: ColumnElement[bool], *statuses: PaymentStatus
) -> list[Payment]:
    """Move the payments `which` selects among `statuses` to `processing` and commit, in one
    statement (the claim). `updated_at` is the claim's time: the recovery job leaves a
    payment alone for `STALE_AFTER` after it."""
    now = utc_now()
    async with ctx.unit_of_work() as uow:
        statement = (
            update(Payment)
            .where(which, col(Payment.status).in_([status.value for status in statuses]))
            .values(status=PaymentStatus.PROCESSING.value, updated_at=now)
            .returning(Payment)
        )
        claimed = list((await uow.session.scalars(statement)).all())
        await uow.commit()
    return claimed


async def _charge_claimed(charger: Charger, payment: Payment) -> None:
    charge_request = Charge(
        idempotency_key=str(payment.order_id),
        amount=Decimal(payment.amount),
        currency=payment.currency,
        method=payment.method,
    )
    try:
        result: ChargeResult | None = await charger.gateway.charge(charge_request)
    except GatewayUnavailableError:
        result = None  # the saga always gets an answer (ADR 0012): declined, unavailable
    with in_conversation(payment.correlation_id, payment.order_event_id):
        async with charger.ctx.unit_of_work() as uow:
            now = utc_now()
            if result is None:
                reason = DeclineReason.GATEWAY_UNAVAILABLE
                recorded = await decline(uow, payment.id, None, reason, now)
            elif result.approved:
                recorded = await approve(uow, payment.id, result.reference, now)
            else:
                reason = result.decline_reason or DeclineReason.CARD_DECLINED
                recorded = await decline(uow, payment.id, result.reference, reason, now)
            cancelled = await uow.session.get(OrderCancellation, payment.order_id) is not None
            await uow.commit()
    if recorded is None:
        log.info("payment %s: its outcome was recorded by another charger", payment.id)
    elif domain.refund_due(PaymentStatus(recorded.status), order_cancelled=cancelled):
        log.info("order %s was cancelled during its charge: refunding", payment.order_id)
        await refund(charger, payment.id)


async def approve(
    uow: UnitOfWork, payment_id: UUID, reference: str, when: datetime
) -> Payment | None:
    """Record the gateway's approval: `processing → approved`, the ledger credit and
    `financial.payment.processed`. None when the payment is not `processing` any more."""
    payment = await _move(
        uow,
        payment_id,
        PaymentStatus.APPROVED,
        when,
        processed_at=when,
        gateway_reference=reference,
    )
    if payment is None:
        return None
    _book(uow, payment, TransactionType.CREDIT, when)
    events.publish_financial_payment_processed(
        uow,
        FinancialPaymentProcessedPayload(
            **_event_fields(payment),
            customer_email=payment.customer_email,
            gateway_reference=reference,
            processed_at=when,
        ),
    )
    await accounts.follow_payment(uow, payment)
    return payment


async def decline(
    uow: UnitOfWork,
    payment_id: UUID,
    reference: str | None,
    reason: DeclineReason,
    when: datetime,
) -> Payment | None:
    """Record the gateway's decline (or its silence): `processing → declined` and
    `financial.payment.failed`. None when the payment is not `processing` any more."""
    payment = await _move(
        uow,
        payment_id,
        PaymentStatus.DECLINED,
        when,
        processed_at=when,
        gateway_reference=reference,
        failure_reason=reason.value,
    )
    if payment is None:
        return None
    events.publish_financial_payment_failed(
        uow,
        FinancialPaymentFailedPayload(
            **_event_fields(payment),
            customer_email=payment.customer_email,
            reason=reason.value,
            processed_at=when,
        ),
    )
    await accounts.follow_payment(uow, payment)
    return payment


async def refund(charger: Charger, payment_id: UUID) -> None:
    """Give back the money of an approved payment of a cancelled order: the gateway's refund
    (key `refund-<order id>`) outside any transaction, then `record_refund`. Nothing when no
    refund is due (refunded already). No answer from the gateway leaves the payment approved
    for the recovery job to refund (money is never reported returned when it was not)."""
    async with charger.ctx.database.session() as session:
        payment = await session.get(Payment, payment_id)
        cancellation = (
            None if payment is None else await session.get(OrderCancellation, payment.order_id)
        )
    if payment is None or cancellation is None:
        return
    if not domain.refund_due(PaymentStatus(payment.status), order_cancelled=True):
        return
    request = Refund(
        idempotency_key=f"refund-{payment.order_id}",
        charge_reference=payment.gateway_reference or "",
        amount=Decimal(payment.amount),
        currency=payment.currency,
    )
    try:
        reference = await charger.gateway.refund(request)
    except GatewayUnavailableError:
        log.warning(
            "order %s: the gateway did not answer its refund; retried later", payment.order_id
        )
        return
    with in_conversation(cancellation.correlation_id, cancellation.event_id):
        async with charger.ctx.unit_of_work() as uow:
            await record_refund(uow, payment_id, reference, cancellation.reason, utc_now())
            await uow.commit()


async def record_refund(
    uow: UnitOfWork, payment_id: UUID, reference: str, reason: str, when: datetime
) -> Payment | None:
    """Record the gateway's refund: `approved → refunded`, the ledger debit and
    `financial.payment.refunded` with the order's cancel reason. None when the payment is
    not `approved` any more (refunded by another refunder)."""
    payment = await _move(
        uow, payment_id, PaymentStatus.REFUNDED, when, refunded_at=when, refund_reference=reference
    )
    if payment is None:
        return None
    _book(uow, payment, TransactionType.DEBIT, when)
    events.publish_financial_payment_refunded(
        uow,
        FinancialPaymentRefundedPayload(**_event_fields(payment), reason=reason, refunded_at=when),
    )
    await accounts.follow_payment(uow, payment)
    return payment


async def _move(
    uow: UnitOfWork, payment_id: UUID, target: PaymentStatus, when: datetime, **values: object
) -> Payment | None:
    """`target`, guarded by the status: `UPDATE ... WHERE status IN (the statuses with an
    edge to target)` — the payment, or None when a concurrent step moved it first."""
    statement = (
        update(Payment)
        .where(
            col(Payment.id) == payment_id,
            col(Payment.status).in_([status.value for status in domain.sources(target)]),
        )
        .values(status=target.value, updated_at=when, **values)
        .returning(Payment)
    )
    return (await uow.session.scalars(statement)).first()


# ------------------------------------------------------------------ recovery


async def recover(
    charger: Charger, *, older_than: timedelta = STALE_AFTER, batch: int = RECOVERY_BATCH
) -> Recovered:
    """Take up the payments whose charger died: `pending` or `processing` ones untouched for
    `older_than` are claimed (FOR UPDATE SKIP LOCKED: rows another transaction holds are
    left for the next run) and charged again with the same idempotency key; approved ones
    of orders cancelled that long ago are refunded. Up to `batch` of each, concurrently."""
    cutoff = utc_now() - older_than
    stale = (
        select(col(Payment.id))
        .where(
            col(Payment.status).in_([status.value for status in domain.CHARGEABLE]),
            col(Payment.updated_at) < cutoff,
        )
        .order_by(col(Payment.updated_at))
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    claimed = await _claim(charger.ctx, col(Payment.id).in_(stale), *domain.CHARGEABLE)
    due = (
        select(col(Payment.id))
        .join(OrderCancellation, col(OrderCancellation.order_id) == col(Payment.order_id))
        .where(
            col(Payment.status) == PaymentStatus.APPROVED.value,
            col(Payment.updated_at) < cutoff,
            col(OrderCancellation.cancelled_at) < cutoff,
        )
        .order_by(col(Payment.updated_at))
        .limit(batch)
    )
    async with charger.ctx.database.session() as session:
        refunds = list((await session.scalars(due)).all())
    if claimed or refunds:
        log.warning(
            "recovering %d charge(s) and %d refund(s) left by a charger", len(claimed), len(refunds)
        )
    outcomes = await asyncio.gather(
        *(_charge_claimed(charger, payment) for payment in claimed),
        *(refund(charger, payment_id) for payment_id in refunds),
        return_exceptions=True,
    )
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            log.error("recovery of a payment failed; retried next run", exc_info=outcome)
    return Recovered(charged=len(claimed), refunded=len(refunds))


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
