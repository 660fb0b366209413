"""Accounts payable and receivable (ADR 0013): created with their due date from the payment
terms, settled (paid / received) or cancelled under the status machines of `domain.py` (an
illegal transition is a 409), made overdue by the periodic job, and — for an order — the account
receivable that follows the order's payment (`follow_payment`, called by the payment commands
at each change of a payment's status)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Final
from uuid import UUID, uuid4

from pydantic import MISSING
from sqlalchemy import update
from sqlmodel import col, select

from generated.financial import models
from services.financial import domain
from services.financial.domain import (
    PAYABLE_TRANSITIONS,
    PAYMENT_CANCEL_REASONS,
    RECEIVABLE_TRANSITIONS,
    AccountCategory,
    AccountTransitionError,
    PayableStatus,
    PaymentStatus,
    ReceivableStatus,
    SupplierStatus,
)
from services.financial.tables import AccountPayable, AccountReceivable, Payment, Supplier
from services.platform import (
    FieldError,
    Problem,
    ServiceContext,
    UnitOfWork,
    affected_rows,
    check_rules,
    resource_not_found,
    utc_now,
)

log = logging.getLogger("services.financial")

OVERDUE_BATCH: Final = 500  # accounts of each kind made overdue per run of the job
PAYABLE: Final = "Account payable"
RECEIVABLE: Final = "Account receivable"


def payable_model(row: AccountPayable) -> models.Payable:
    return models.Payable.model_validate(row, from_attributes=True)


def receivable_model(row: AccountReceivable) -> models.Receivable:
    return models.Receivable.model_validate(row, from_attributes=True)


def _amount_rules(amount: str) -> list[FieldError]:
    return [] if Decimal(amount) > 0 else [FieldError("amount", "must be at least 0.01")]


def _settled_at(given: datetime | None, field: str, now: datetime) -> datetime:
    if given is None:
        return now
    check_rules([FieldError(field, "must not be in the future")] if given > now else [])
    return given


def _conflict(error: AccountTransitionError) -> Problem:
    return Problem(409, detail=str(error))


# ------------------------------------------------------------------ payables


async def create_payable(
    uow: UnitOfWork, body: models.PayableCreate, *, new_id: UUID | None = None
) -> models.Payable:
    supplier = await uow.session.get(Supplier, body.supplier_id)
    errors = _amount_rules(body.amount)
    if supplier is None or supplier.status != SupplierStatus.ACTIVE.value:
        errors.insert(0, FieldError("supplier_id", "is not an active supplier"))
    check_rules(errors)
    now = utc_now()
    due = domain.due_date(body.issue_date, body.payment_terms_days)
    overdue = domain.is_overdue(due, now.date())
    row = AccountPayable(
        id=new_id or uuid4(),
        supplier_id=body.supplier_id,
        description=body.description,
        category=body.category.value,
        amount=body.amount,
        currency=body.currency,
        issue_date=body.issue_date,
        payment_terms_days=body.payment_terms_days,
        due_date=due,
        status=(PayableStatus.OVERDUE if overdue else PayableStatus.PENDING).value,
        created_at=now,
        updated_at=now,
    )
    uow.session.add(row)
    await uow.session.flush()
    return payable_model(row)


async def _locked_payable(uow: UnitOfWork, payable_id: UUID) -> AccountPayable:
    statement = select(AccountPayable).where(col(AccountPayable.id) == payable_id)
    row = (await uow.session.scalars(statement.with_for_update())).first()
    if row is None:
        raise resource_not_found(PAYABLE, payable_id)
    return row


def _move_payable(row: AccountPayable, target: PayableStatus, now: datetime) -> None:
    try:
        domain.account_transition(PAYABLE, PAYABLE_TRANSITIONS, PayableStatus(row.status), target)
    except AccountTransitionError as error:
        raise _conflict(error) from None
    row.status = target.value
    row.updated_at = now
    row.version += 1


async def pay_payable(
    uow: UnitOfWork, payable_id: UUID, body: models.PayableSettle
) -> models.Payable:
    row = await _locked_payable(uow, payable_id)
    now = utc_now()
    _move_payable(row, PayableStatus.PAID, now)
    row.paid_at = _settled_at(None if body.paid_at is MISSING else body.paid_at, "paid_at", now)
    await uow.session.flush()
    return payable_model(row)


async def cancel_payable(
    uow: UnitOfWork, payable_id: UUID, body: models.AccountCancel
) -> models.Payable:
    row = await _locked_payable(uow, payable_id)
    now = utc_now()
    _move_payable(row, PayableStatus.CANCELLED, now)
    row.cancelled_at = now
    row.cancellation_reason = body.reason
    await uow.session.flush()
    return payable_model(row)


# ------------------------------------------------------------------ receivables


async def create_receivable(
    uow: UnitOfWork, body: models.ReceivableCreate, *, new_id: UUID | None = None
) -> models.Receivable:
    """A manual account receivable (an order's is made by its payment: `follow_payment`)."""
    check_rules(_amount_rules(body.amount))
    now = utc_now()
    due = domain.due_date(body.issue_date, body.payment_terms_days)
    overdue = domain.is_overdue(due, now.date())
    row = AccountReceivable(
        id=new_id or uuid4(),
        customer_id=body.customer_id,
        customer_name=body.customer_name,
        description=body.description,
        category=body.category.value,
        amount=body.amount,
        currency=body.currency,
        issue_date=body.issue_date,
        payment_terms_days=body.payment_terms_days,
        due_date=due,
        status=(ReceivableStatus.OVERDUE if overdue else ReceivableStatus.PENDING).value,
        created_at=now,
        updated_at=now,
    )
    uow.session.add(row)
    await uow.session.flush()
    return receivable_model(row)


async def _locked_manual_receivable(uow: UnitOfWork, receivable_id: UUID) -> AccountReceivable:
    statement = select(AccountReceivable).where(col(AccountReceivable.id) == receivable_id)
    row = (await uow.session.scalars(statement.with_for_update())).first()
    if row is None:
        raise resource_not_found(RECEIVABLE, receivable_id)
    if row.order_id is not None:
        raise Problem(
            409,
            detail=f"{RECEIVABLE} of order {row.order_number} follows its payment; "
            "it is not settled by hand.",
        )
    return row


def _move_receivable(row: AccountReceivable, target: ReceivableStatus, now: datetime) -> None:
    current = ReceivableStatus(row.status)
    try:
        domain.account_transition(RECEIVABLE, RECEIVABLE_TRANSITIONS, current, target)
    except AccountTransitionError as error:
        raise _conflict(error) from None
    row.status = target.value
    row.updated_at = now
    row.version += 1


async def receive_receivable(
    uow: UnitOfWork, receivable_id: UUID, body: models.ReceivableSettle
) -> models.Receivable:
    row = await _locked_manual_receivable(uow, receivable_id)
    now = utc_now()
    _move_receivable(row, ReceivableStatus.RECEIVED, now)
    given = None if body.received_at is MISSING else body.received_at
    row.received_at = _settled_at(given, "received_at", now)
    await uow.session.flush()
    return receivable_model(row)


async def cancel_receivable(
    uow: UnitOfWork, receivable_id: UUID, body: models.AccountCancel
) -> models.Receivable:
    row = await _locked_manual_receivable(uow, receivable_id)
    now = utc_now()
    _move_receivable(row, ReceivableStatus.CANCELLED, now)
    row.cancelled_at = now
    row.cancellation_reason = body.reason
    await uow.session.flush()
    return receivable_model(row)


# ------------------------------------------------------------------ an order's receivable


def _apply(
    row: AccountReceivable, target: ReceivableStatus, payment: Payment, now: datetime
) -> None:
    row.status = target.value
    row.updated_at = now
    if target is ReceivableStatus.RECEIVED:
        row.received_at = payment.processed_at or now
    elif target is ReceivableStatus.CANCELLED:
        row.cancelled_at = now
        row.cancellation_reason = PAYMENT_CANCEL_REASONS[PaymentStatus(payment.status)]


async def follow_payment(uow: UnitOfWork, payment: Payment) -> AccountReceivable:
    """The order's account receivable as its payment now stands (`domain.receivable_for_payment`):
    opened at the payment's first sight (issued the day the payment was made, due the same day:
    the order is paid when placed), `received` once approved, `cancelled` once declined,
    cancelled or refunded. One per order (unique `order_id`); a repeat changes nothing."""
    statement = select(AccountReceivable).where(col(AccountReceivable.order_id) == payment.order_id)
    row = (await uow.session.scalars(statement.with_for_update())).first()
    current = None if row is None else ReceivableStatus(row.status)
    target = domain.receivable_for_payment(current, PaymentStatus(payment.status))
    now = utc_now()
    if row is not None:
        if target is not None:
            _apply(row, target, payment, now)
            row.version += 1
            await uow.session.flush()
        return row
    issued = payment.created_at.date()
    opened = target or ReceivableStatus.PENDING
    if opened is ReceivableStatus.PENDING and domain.is_overdue(issued, now.date()):
        opened = ReceivableStatus.OVERDUE
    row = AccountReceivable(
        customer_id=payment.customer_id,
        order_id=payment.order_id,
        order_number=payment.order_number,
        description=f"Order {payment.order_number}",
        category=AccountCategory.INCOME.value,
        amount=payment.amount,
        currency=payment.currency,
        issue_date=issued,
        payment_terms_days=0,
        due_date=issued,
        status=opened.value,
        created_at=now,
        updated_at=now,
    )
    _apply(row, opened, payment, now)
    uow.session.add(row)
    # The unique order_id is the last guard: a concurrent twin fails here and is retried.
    await uow.session.flush()
    return row


# ------------------------------------------------------------------ the overdue job


@dataclass(frozen=True, slots=True)
class Overdue:
    payables: int
    receivables: int


async def _mark_overdue(
    uow: UnitOfWork,
    table: type[AccountPayable] | type[AccountReceivable],
    today: date,
    now: datetime,
    batch: int,
) -> int:
    pending = PayableStatus.PENDING.value  # the same word in both machines
    # The ids first, then the update: a LIMIT inside `UPDATE ... WHERE id IN (SELECT ...)` is
    # not a bound on PostgreSQL (the locking subquery may run again per row).
    due = (
        select(table.id)
        .where(col(table.status) == pending, col(table.due_date) < today)
        .order_by(col(table.due_date), col(table.id))
        .limit(batch)
        # Rows a settling request holds are left for the next run (PostgreSQL).
        .with_for_update(skip_locked=True)
    )
    ids = list((await uow.session.scalars(due)).all())
    if not ids:
        return 0
    result = await uow.session.execute(
        update(table)
        .where(col(table.id).in_(ids), col(table.status) == pending)
        .values(status=PayableStatus.OVERDUE.value, updated_at=now, version=col(table.version) + 1)
        .execution_options(synchronize_session=False)
    )
    return affected_rows(result)


async def mark_overdue(
    ctx: ServiceContext, *, today: date | None = None, batch: int = OVERDUE_BATCH
) -> Overdue:
    """The periodic job: `pending` accounts whose due date is before today (UTC) become
    `overdue`, at most `batch` of each kind per run, the earliest due first. Idempotent: an
    overdue account is not pending any more."""
    now = utc_now()
    day = today or now.date()
    async with ctx.unit_of_work() as uow:
        marked = Overdue(
            payables=await _mark_overdue(uow, AccountPayable, day, now, batch),
            receivables=await _mark_overdue(uow, AccountReceivable, day, now, batch),
        )
        await uow.commit()
    if marked.payables or marked.receivables:
        log.info("marked overdue: %d payables, %d receivables", marked.payables, marked.receivables)
    return marked
