"""HTTP handlers of the financial service: one small coroutine per operationId, typed by the
generated `FinancialHandlers` Protocol (`service.py` checks it). The kit has parsed, checked
and authorised the request; each handler calls a query or a command (writes, in the unit of
work the kit commits), or renders an invoice."""

from __future__ import annotations

from datetime import date
from uuid import UUID

from generated.financial import models
from services.financial import queries, renditions
from services.financial.commands import accounts, invoices, suppliers
from services.financial.domain import SummaryPeriod
from services.financial.issuer import issuer_of
from services.platform import Call, Reply, WriteCall


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


async def list_invoices(
    call: Call,
    *,
    status: str | None = None,
    series: str | None = None,
    customer_id: UUID | None = None,
    page: int = 1,
    per_page: int = 15,
) -> models.InvoiceList:
    return await queries.list_invoices(
        call.ctx,
        status=status,
        series=series,
        customer_id=customer_id,
        page=page,
        per_page=per_page,
    )


async def generate_invoice(call: WriteCall, *, body: models.InvoiceCreate) -> models.Invoice:
    return await invoices.generate(call.uow, issuer_of(call.ctx), body)


async def get_invoice(call: Call, *, invoice_id: UUID) -> models.Invoice:
    return await queries.get_invoice(call.ctx, invoice_id)


async def get_order_invoice(call: Call, *, order_id: UUID) -> models.Invoice:
    return await queries.get_order_invoice(call.ctx, order_id)


async def issue_invoice(call: WriteCall, *, invoice_id: UUID) -> models.Invoice:
    return await invoices.issue(call.uow, invoice_id)


async def send_invoice(call: WriteCall, *, invoice_id: UUID) -> models.Invoice:
    return await invoices.send(call.uow, invoice_id)


async def cancel_invoice(
    call: WriteCall, *, invoice_id: UUID, body: models.InvoiceCancel
) -> models.Invoice:
    return await invoices.cancel(call.uow, invoice_id, body)


async def get_invoice_xml(call: Call, *, invoice_id: UUID) -> bytes:
    invoice = await queries.get_invoice(call.ctx, invoice_id)
    return renditions.invoice_xml(invoice, issuer_of(call.ctx))


async def get_invoice_pdf(call: Call, *, invoice_id: UUID) -> Reply:
    invoice = await queries.get_invoice(call.ctx, invoice_id)
    document = renditions.invoice_pdf(invoice, issuer_of(call.ctx))
    disposition = f'attachment; filename="nfe-{invoice.nfe_key}.pdf"'
    return Reply(document, headers={"Content-Disposition": disposition})


async def list_suppliers(
    call: Call,
    *,
    search: str | None = None,
    status: str | None = None,
    page: int = 1,
    per_page: int = 15,
) -> models.SupplierList:
    return await queries.list_suppliers(
        call.ctx, search=search, status=status, page=page, per_page=per_page
    )


async def create_supplier(call: WriteCall, *, body: models.SupplierCreate) -> models.Supplier:
    return await suppliers.create_supplier(call.uow, body)


async def get_supplier(call: Call, *, supplier_id: UUID) -> models.Supplier:
    return await queries.get_supplier(call.ctx, supplier_id)


async def update_supplier(
    call: WriteCall,
    *,
    supplier_id: UUID,
    body: models.SupplierUpdate,
    if_match: str | None = None,
) -> models.Supplier:
    return await suppliers.update_supplier(call.uow, supplier_id, body, if_match)


async def deactivate_supplier(call: WriteCall, *, supplier_id: UUID) -> models.Supplier:
    return await suppliers.deactivate_supplier(call.uow, supplier_id)


async def list_payables(
    call: Call,
    *,
    status: str | None = None,
    supplier_id: UUID | None = None,
    category: str | None = None,
    due_from: date | None = None,
    due_to: date | None = None,
    page: int = 1,
    per_page: int = 15,
) -> models.PayableList:
    return await queries.list_payables(
        call.ctx,
        status=status,
        supplier_id=supplier_id,
        category=category,
        due_from=due_from,
        due_to=due_to,
        page=page,
        per_page=per_page,
    )


async def create_payable(call: WriteCall, *, body: models.PayableCreate) -> models.Payable:
    return await accounts.create_payable(call.uow, body)


async def get_payable(call: Call, *, payable_id: UUID) -> models.Payable:
    return await queries.get_payable(call.ctx, payable_id)


async def pay_payable(
    call: WriteCall, *, payable_id: UUID, body: models.PayableSettle
) -> models.Payable:
    return await accounts.pay_payable(call.uow, payable_id, body)


async def cancel_payable(
    call: WriteCall, *, payable_id: UUID, body: models.AccountCancel
) -> models.Payable:
    return await accounts.cancel_payable(call.uow, payable_id, body)


async def list_receivables(
    call: Call,
    *,
    status: str | None = None,
    customer_id: UUID | None = None,
    order_id: UUID | None = None,
    category: str | None = None,
    due_from: date | None = None,
    due_to: date | None = None,
    page: int = 1,
    per_page: int = 15,
) -> models.ReceivableList:
    return await queries.list_receivables(
        call.ctx,
        status=status,
        customer_id=customer_id,
        order_id=order_id,
        category=category,
        due_from=due_from,
        due_to=due_to,
        page=page,
        per_page=per_page,
    )


async def create_receivable(call: WriteCall, *, body: models.ReceivableCreate) -> models.Receivable:
    return await accounts.create_receivable(call.uow, body)


async def get_receivable(call: Call, *, receivable_id: UUID) -> models.Receivable:
    return await queries.get_receivable(call.ctx, receivable_id)


async def receive_receivable(
    call: WriteCall, *, receivable_id: UUID, body: models.ReceivableSettle
) -> models.Receivable:
    return await accounts.receive_receivable(call.uow, receivable_id, body)


async def cancel_receivable(
    call: WriteCall, *, receivable_id: UUID, body: models.AccountCancel
) -> models.Receivable:
    return await accounts.cancel_receivable(call.uow, receivable_id, body)
