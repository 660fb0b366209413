"""HTTP handlers of the financial service: one small coroutine per operationId, typed by the
generated `FinancialHandlers` Protocol (`service.py` checks it). The kit has parsed, checked
and authorised the request; each handler calls a query."""

from __future__ import annotations

from datetime import date
from uuid import UUID

from generated.financial import models
from services.financial import queries
from services.financial.domain import SummaryPeriod
from services.platform import Call


async def list_payments(
    call: Call,
    *,
    status: str | None = None,
    method: str | None = None,
    page: int = 1,
    per_page: int = 15,
) -> models.PaymentList:
    return await queries.list_payments(
        call.ctx, status=status, method=method, page=page, per_page=per_page
    )


async def get_payment(call: Call, *, payment_id: UUID) -> models.Payment:
    return await queries.get_payment(call.ctx, payment_id)


async def get_order_payment(call: Call, *, order_id: UUID) -> models.Payment:
    return await queries.get_order_payment(call.ctx, order_id)


async def list_transactions(
    call: Call,
    *,
    type_: str | None = None,
    category: str | None = None,
    from_: date | None = None,
    to: date | None = None,
    page: int = 1,
    per_page: int = 15,
) -> models.TransactionList:
    return await queries.list_transactions(
        call.ctx,
        kind=type_,
        category=category,
        start=from_,
        end=to,
        page=page,
        per_page=per_page,
    )


async def get_transactions_summary(
    call: Call, *, from_: date, to: date, period: str | None = None
) -> models.TransactionSummary:
    chosen = SummaryPeriod(period) if period is not None else SummaryPeriod.MONTH
    return await queries.summarise_transactions(call.ctx, start=from_, end=to, period=chosen)
