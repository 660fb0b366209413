"""The financial service's reads, answered as the generated models."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

from sqlalchemy import case, func, or_
from sqlalchemy import select as select_columns
from sqlmodel import col, select

from generated.financial import models
from services.financial.commands.accounts import PAYABLE, RECEIVABLE
from services.financial.domain import (
    InvoiceStatus,
    SummaryPeriod,
    TransactionType,
    summary_range_problem,
)
from services.financial.tables import (
    AccountPayable,
    AccountReceivable,
    Invoice,
    LedgerTransaction,
    Payment,
    Supplier,
)
from services.platform import (
    LIKE_ESCAPE,
    Page,
    PageMeta,
    Problem,
    ServiceContext,
    format_amount,
    like_pattern,
    page_of,
    paginate,
    resource_not_found,
)


async def list_payments(
    ctx: ServiceContext, *, status: str | None, method: str | None, page: int, per_page: int
) -> models.PaymentList:
    statement = select(Payment)
    if status is not None:
        statement = statement.where(col(Payment.status) == status)
    if method is not None:
        statement = statement.where(col(Payment.method) == method)
    statement = statement.order_by(col(Payment.created_at).desc(), col(Payment.id))
    async with ctx.database.read_session() as session:
        rows, meta = await paginate(session, statement, Page.of(page, per_page))
    return page_of(models.PaymentList, rows, meta)


async def get_payment(ctx: ServiceContext, payment_id: UUID) -> models.Payment:
    async with ctx.database.read_session() as session:
        found = await session.get(Payment, payment_id)
    if found is None:
        raise resource_not_found("Payment", payment_id)
    return models.Payment.model_validate(found, from_attributes=True)


async def get_order_payment(ctx: ServiceContext, order_id: UUID) -> models.Payment:
    statement = select(Payment).where(col(Payment.order_id) == order_id)
    async with ctx.database.read_session() as session:
        found = (await session.scalars(statement)).first()
    if found is None:
        raise resource_not_found("The payment of order", order_id)
    return models.Payment.model_validate(found, from_attributes=True)


async def list_transactions(
    ctx: ServiceContext,
    *,
    kind: str | None,
    category: str | None,
    start: date | None,
    end: date | None,
    page: int,
    per_page: int,
) -> models.TransactionList:
    # `to` before `from` is a filter nothing matches: an empty page, as any other such filter.
    statement = select(LedgerTransaction)
    if kind is not None:
        statement = statement.where(col(LedgerTransaction.type) == kind)
    if category is not None:
        statement = statement.where(col(LedgerTransaction.category) == category)
    if start is not None:
        statement = statement.where(col(LedgerTransaction.booked_on) >= start)
    if end is not None:
        statement = statement.where(col(LedgerTransaction.booked_on) <= end)
    statement = statement.order_by(
        col(LedgerTransaction.occurred_at).desc(), col(LedgerTransaction.id)
    )
    async with ctx.database.read_session() as session:
        rows, meta = await paginate(session, statement, Page.of(page, per_page))
    return page_of(models.TransactionList, rows, meta)


async def summarise_transactions(
    ctx: ServiceContext, *, start: date, end: date, period: SummaryPeriod
) -> models.TransactionSummary:
    """Credits, debits and net per period and currency, grouped in the database."""
    problem = summary_range_problem(start, end, period)
    if problem is not None:
        raise Problem(
            400,
            detail="The range cannot be summarised.",
            errors=[{"field": "to", "message": problem}],
        )
    bucket = col(
        LedgerTransaction.booked_on
        if period is SummaryPeriod.DAY
        else LedgerTransaction.booked_month
    )
    statement = (
        select_columns(
            bucket,
            col(LedgerTransaction.currency),
            col(LedgerTransaction.type),
            func.sum(col(LedgerTransaction.amount)),
            func.count(),
        )
        .where(col(LedgerTransaction.booked_on) >= start, col(LedgerTransaction.booked_on) <= end)
        .group_by(bucket, col(LedgerTransaction.currency), col(LedgerTransaction.type))
    )
    async with ctx.database.read_session() as session:
        rows = (await session.execute(statement)).all()
    totals: dict[tuple[date, str], dict[str, Any]] = defaultdict(
        lambda: {"credits": Decimal(0), "debits": Decimal(0), "transactions": 0}
    )
    for period_start, currency, kind, amount, count in rows:
        entry = totals[(period_start, currency)]
        entry["credits" if kind == TransactionType.CREDIT else "debits"] += Decimal(amount)
        entry["transactions"] += count
    data = [
        {
            "period_start": period_start,
            "currency": currency,
            "credits": format_amount(entry["credits"]),
            "debits": format_amount(entry["debits"]),
            "net": format_amount(entry["credits"] - entry["debits"]),
            "transactions": entry["transactions"],
        }
        for (period_start, currency), entry in sorted(totals.items())
    ]
    return models.TransactionSummary.model_validate(
        {"from": start, "to": end, "period": period.value, "data": data}
    )


async def list_invoices(
    ctx: ServiceContext,
    *,
    status: str | None,
    series: str | None,
    customer_id: UUID | None,
    page: int,
    per_page: int,
) -> models.InvoiceList:
    statement = select(Invoice)
    if status is not None:
        statement = statement.where(col(Invoice.status) == status)
    if series is not None:
        statement = statement.where(col(Invoice.series) == series)
    if customer_id is not None:
        statement = statement.where(col(Invoice.customer_id) == customer_id)
    statement = statement.order_by(col(Invoice.created_at).desc(), col(Invoice.id))
    async with ctx.database.read_session() as session:
        rows, meta = await paginate(session, statement, Page.of(page, per_page))
    return page_of(models.InvoiceList, rows, meta)


async def get_invoice(ctx: ServiceContext, invoice_id: UUID) -> models.Invoice:
    async with ctx.database.read_session() as session:
        found = await session.get(Invoice, invoice_id)
    if found is None:
        raise resource_not_found("Invoice", invoice_id)
    return models.Invoice.model_validate(found, from_attributes=True)


async def get_order_invoice(ctx: ServiceContext, order_id: UUID) -> models.Invoice:
    """The order's invoice that is not cancelled (at most one), else its newest cancelled one."""
    live = case((col(Invoice.status) == InvoiceStatus.CANCELLED.value, 1), else_=0)
    statement = (
        select(Invoice)
        .where(col(Invoice.order_id) == order_id)
        .order_by(live, col(Invoice.created_at).desc(), col(Invoice.id))
    )
    async with ctx.database.read_session() as session:
        found = (await session.scalars(statement)).first()
    if found is None:
        raise resource_not_found("The invoice of order", order_id)
    return models.Invoice.model_validate(found, from_attributes=True)


# ------------------------------------------------------------------ suppliers and accounts


async def list_suppliers(
    ctx: ServiceContext, *, search: str | None, status: str | None, page: int, per_page: int
) -> models.SupplierList:
    statement = select(Supplier).order_by(col(Supplier.name), col(Supplier.id))
    if search is not None:
        statement = statement.where(
            or_(
                func.lower(col(Supplier.name)).like(like_pattern(search), escape=LIKE_ESCAPE),
                col(Supplier.cnpj).like(like_pattern(search, anywhere=False), escape=LIKE_ESCAPE),
            )
        )
    if status is not None:
        statement = statement.where(col(Supplier.status) == status)
    async with ctx.database.read_session() as session:
        rows, meta = await paginate(session, statement, Page.of(page, per_page))
    return page_of(models.SupplierList, rows, meta)


async def get_supplier(ctx: ServiceContext, supplier_id: UUID) -> models.Supplier:
    async with ctx.database.read_session() as session:
        found = await session.get(Supplier, supplier_id)
    if found is None:
        raise resource_not_found("Supplier", supplier_id)
    return models.Supplier.model_validate(found, from_attributes=True)


Account = TypeVar("Account", AccountPayable, AccountReceivable)


async def _accounts_page(
    ctx: ServiceContext,
    table: type[Account],
    equal: Mapping[str, object | None],
    due_from: date | None,
    due_to: date | None,
    page: int,
    per_page: int,
) -> tuple[Sequence[Account], PageMeta]:
    """A page of payables or receivables, earliest due first: the given columns equal to their
    values, the due date within the range (`due_to` before `due_from` matches nothing)."""
    statement = select(table)
    for name, value in equal.items():
        if value is not None:
            statement = statement.where(getattr(table, name) == value)
    if due_from is not None:
        statement = statement.where(col(table.due_date) >= due_from)
    if due_to is not None:
        statement = statement.where(col(table.due_date) <= due_to)
    statement = statement.order_by(col(table.due_date), col(table.id))
    async with ctx.database.read_session() as session:
        return await paginate(session, statement, Page.of(page, per_page))


async def list_payables(
    ctx: ServiceContext,
    *,
    status: str | None,
    supplier_id: UUID | None,
    category: str | None,
    due_from: date | None,
    due_to: date | None,
    page: int,
    per_page: int,
) -> models.PayableList:
    equal = {"status": status, "supplier_id": supplier_id, "category": category}
    rows, meta = await _accounts_page(ctx, AccountPayable, equal, due_from, due_to, page, per_page)
    return page_of(models.PayableList, rows, meta)


async def get_payable(ctx: ServiceContext, payable_id: UUID) -> models.Payable:
    async with ctx.database.read_session() as session:
        found = await session.get(AccountPayable, payable_id)
    if found is None:
        raise resource_not_found(PAYABLE, payable_id)
    return models.Payable.model_validate(found, from_attributes=True)


async def list_receivables(
    ctx: ServiceContext,
    *,
    status: str | None,
    customer_id: UUID | None,
    order_id: UUID | None,
    category: str | None,
    due_from: date | None,
    due_to: date | None,
    page: int,
    per_page: int,
) -> models.ReceivableList:
    equal = {
        "status": status,
        "customer_id": customer_id,
        "order_id": order_id,
        "category": category,
    }
    rows, meta = await _accounts_page(
        ctx, AccountReceivable, equal, due_from, due_to, page, per_page
    )
    return page_of(models.ReceivableList, rows, meta)


async def get_receivable(ctx: ServiceContext, receivable_id: UUID) -> models.Receivable:
    async with ctx.database.read_session() as session:
        found = await session.get(AccountReceivable, receivable_id)
    if found is None:
        raise resource_not_found(RECEIVABLE, receivable_id)
    return models.Receivable.model_validate(found, from_attributes=True)
