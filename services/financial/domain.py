"""The financial service's pure rules: the payment status machine, what an order event does to
a payment, money on the wire, the ranges a ledger summary may span, invoices (their status
machine, the NF-e access key and its check digit, the tax rule; ADR 0014), and accounts payable
and receivable — due dates from payment terms, their status machines, overdue, and what a
payment does to its order's account receivable (ADR 0013). Table-tested in
tests/financial/test_domain.py, test_invoice_domain.py and test_accounts_domain.py."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import Final, TypeVar


class PaymentStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    APPROVED = "approved"
    DECLINED = "declined"
    REFUNDED = "refunded"
    CANCELLED = "cancelled"


_TRANSITIONS: Final[Mapping[PaymentStatus, frozenset[PaymentStatus]]] = {
    PaymentStatus.PENDING: frozenset({PaymentStatus.PROCESSING, PaymentStatus.CANCELLED}),
    PaymentStatus.PROCESSING: frozenset(
        {PaymentStatus.APPROVED, PaymentStatus.DECLINED, PaymentStatus.CANCELLED}
    ),
    PaymentStatus.APPROVED: frozenset({PaymentStatus.REFUNDED}),
    PaymentStatus.DECLINED: frozenset(),
    PaymentStatus.REFUNDED: frozenset(),
    PaymentStatus.CANCELLED: frozenset(),
}


def can_transition(current: PaymentStatus, target: PaymentStatus) -> bool:
    return target in _TRANSITIONS[current]


class IllegalTransitionError(Exception):
    def __init__(self, current: PaymentStatus, target: PaymentStatus) -> None:
        super().__init__(f"payment is {current}: it cannot become {target}")
        self.current = current
        self.target = target


def transition(current: PaymentStatus, target: PaymentStatus) -> PaymentStatus:
    """The new status, or IllegalTransitionError when the machine has no such edge."""
    if not can_transition(current, target):
        raise IllegalTransitionError(current, target)
    return target


def sources(target: PaymentStatus) -> frozenset[PaymentStatus]:
    """The statuses `target` may be reached from: the guard of a conditional UPDATE that
    moves a payment there (a row in any other status has been moved by someone else)."""
    return frozenset(current for current, targets in _TRANSITIONS.items() if target in targets)


# A charge starts from `pending`; the recovery job starts one again, with the same
# idempotency key, for a payment left `processing` (its answer lost in a crash).
CHARGEABLE: Final = frozenset({PaymentStatus.PENDING, PaymentStatus.PROCESSING})


class CancelAction(StrEnum):
    """What `sales.order.cancelled` does to the order's payment."""

    REFUND = "refund"  # money was taken: give it back
    CANCEL = "cancel"  # the gateway was never asked: nothing can have been taken, stop it
    # The charge is with the gateway, which may take the money: its outcome decides — an
    # approval is refunded at once, a decline stays declined (as had the cancellation come
    # just after the answer).
    AWAIT_OUTCOME = "await_outcome"
    NOTHING = "nothing"  # never charged (declined) or already refunded / cancelled


def on_order_cancelled(current: PaymentStatus) -> CancelAction:
    if current is PaymentStatus.APPROVED:
        return CancelAction.REFUND
    if current is PaymentStatus.PENDING:
        return CancelAction.CANCEL
    if current is PaymentStatus.PROCESSING:
        return CancelAction.AWAIT_OUTCOME
    # declined is the usual saga path (sales cancels the order because its payment failed);
    # refunded / cancelled: a second cancellation of the same order.
    return CancelAction.NOTHING


def refund_due(current: PaymentStatus, *, order_cancelled: bool) -> bool:
    """An approved payment of a cancelled order is refunded (whenever either became known)."""
    return order_cancelled and current is PaymentStatus.APPROVED


class DeclineReason(StrEnum):
    CARD_DECLINED = "card_declined"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    GATEWAY_UNAVAILABLE = "gateway_unavailable"


class TransactionType(StrEnum):
    CREDIT = "credit"
    DEBIT = "debit"


class TransactionCategory(StrEnum):
    SALES = "sales"
    REFUNDS = "refunds"


CENT: Final = Decimal("0.01")
RATE_STEP: Final = Decimal("0.0001")


def format_rate(value: Decimal) -> str:
    """A tax rate on the wire: four decimals ("0.1800")."""
    return f"{value.quantize(RATE_STEP):f}"


@dataclass(frozen=True, slots=True)
class OrderFacts:
    """What a payment keeps of its order; a second `sales.order.created` of the same order must
    state the same, or it is another order under a reused id."""

    amount: Decimal
    currency: str
    method: str

    def differences(self, other: OrderFacts) -> list[str]:
        return [
            name
            for name, mine, theirs in (
                ("amount", self.amount, other.amount),
                ("currency", self.currency, other.currency),
                ("method", self.method, other.method),
            )
            if mine != theirs
        ]


class SummaryPeriod(StrEnum):
    DAY = "day"
    MONTH = "month"


# Bounds of a summary: its answer (one row per period and currency) stays small.
MAX_SUMMARY_DAYS: Final = 366
MAX_SUMMARY_MONTHS: Final = 120


def summary_range_problem(start: date, end: date, period: SummaryPeriod) -> str | None:
    """Why the range cannot be summarised, or None."""
    if end < start:
        return "must not be before `from`"
    if period is SummaryPeriod.DAY and (end - start).days + 1 > MAX_SUMMARY_DAYS:
        return f"must be at most {MAX_SUMMARY_DAYS} days after `from` when grouped by day"
    months = (end.year - start.year) * 12 + end.month - start.month + 1
    if period is SummaryPeriod.MONTH and months > MAX_SUMMARY_MONTHS:
        return f"must be at most {MAX_SUMMARY_MONTHS} months after `from` when grouped by month"
    return None


def month_start(day: date) -> date:
    return day.replace(day=1)


# ---------------------------------------------------------------- invoices (ADR 0014)


class InvoiceStatus(StrEnum):
    PENDING = "pending"  # numbered and keyed, not yet issued (authorised)
    ISSUED = "issued"
    SENT = "sent"  # delivered to the customer
    CANCELLED = "cancelled"


_INVOICE_TRANSITIONS: Final[Mapping[InvoiceStatus, frozenset[InvoiceStatus]]] = {
    InvoiceStatus.PENDING: frozenset({InvoiceStatus.ISSUED, InvoiceStatus.CANCELLED}),
    InvoiceStatus.ISSUED: frozenset({InvoiceStatus.SENT, InvoiceStatus.CANCELLED}),
    InvoiceStatus.SENT: frozenset({InvoiceStatus.CANCELLED}),
    InvoiceStatus.CANCELLED: frozenset(),
}

# An authorised NF-e may be cancelled within 24 hours of its authorisation (SEFAZ refuses a
# later cancellation; a return invoice is the way then). `issued_at` is the authorisation.
CANCELLATION_WINDOW: Final = timedelta(hours=24)


def invoice_transition_problem(
    current: InvoiceStatus,
    target: InvoiceStatus,
    *,
    issued_at: datetime | None = None,
    now: datetime | None = None,
) -> str | None:
    """Why the invoice cannot move from `current` to `target`, or None when it can. Cancelling a
    sent invoice needs `issued_at` and `now`: it is allowed within CANCELLATION_WINDOW."""
    if target not in _INVOICE_TRANSITIONS[current]:
        return f"is {current}: it cannot become {target}"
    late = issued_at is None or now is None or now - issued_at > CANCELLATION_WINDOW
    if current is InvoiceStatus.SENT and target is InvoiceStatus.CANCELLED and late:
        return "was issued more than 24 hours ago: it can no longer be cancelled"
    return None


MAX_INVOICE_NUMBER: Final = 999_999_999  # nNF: nine digits
NFE_MODEL: Final = "55"  # NF-e (model 55)
NORMAL_EMISSION: Final = "1"  # tpEmis 1: normal emission
_KEY_WEIGHTS: Final = (2, 3, 4, 5, 6, 7, 8, 9)


def nfe_check_digit(digits: str) -> int:
    """cDV of the first 43 digits of an access key: modulo 11, weights 2 to 9 from the right
    (repeating); a remainder of 0 or 1 gives 0 (Manual de Orientação do Contribuinte)."""
    if len(digits) != 43 or not digits.isdigit():
        raise ValueError("an access key's check digit covers exactly 43 digits")
    total = sum(
        int(digit) * _KEY_WEIGHTS[i % len(_KEY_WEIGHTS)] for i, digit in enumerate(reversed(digits))
    )
    remainder = total % 11
    return 0 if remainder < 2 else 11 - remainder


def nfe_key_is_valid(key: str) -> bool:
    return len(key) == 44 and key.isdigit() and nfe_check_digit(key[:43]) == int(key[43])


def numeric_code(seed: bytes, number: int) -> int:
    """cNF: eight digits drawn from `seed` (the invoice id's bytes, so a key can be rebuilt),
    never equal to the number (the manual forbids cNF = nNF)."""
    code = int.from_bytes(hashlib.sha256(seed).digest()[:8], "big") % 100_000_000
    return (code + 1) % 100_000_000 if code == number else code


@dataclass(frozen=True, slots=True)
class KeyParts:
    """What an NF-e access key is made of."""

    state_code: str  # cUF, two digits (IBGE code of the issuer's state)
    issued_on: date  # gives AAMM
    cnpj: str  # the issuer's, 14 digits
    series: int  # 0-999
    number: int  # 1-999,999,999
    code: int  # cNF, 0-99,999,999


def nfe_key(parts: KeyParts) -> str:
    """cUF(2) AAMM(4) CNPJ(14) mod(2) serie(3) nNF(9) tpEmis(1) cNF(8) cDV(1): 44 digits."""
    if not (len(parts.state_code) == 2 and parts.state_code.isdigit()):
        raise ValueError("cUF must be two digits")
    if not (len(parts.cnpj) == 14 and parts.cnpj.isdigit()):
        raise ValueError("the CNPJ must be 14 digits")
    if not 0 <= parts.series <= 999:
        raise ValueError("the series must be 0 to 999")
    if not 1 <= parts.number <= MAX_INVOICE_NUMBER:
        raise ValueError(f"the number must be 1 to {MAX_INVOICE_NUMBER}")
    if not 0 <= parts.code <= 99_999_999:
        raise ValueError("cNF must be at most eight digits")
    body = (
        f"{parts.state_code}{parts.issued_on:%y%m}{parts.cnpj}{NFE_MODEL}{parts.series:03d}"
        f"{parts.number:09d}{NORMAL_EMISSION}{parts.code:08d}"
    )
    return f"{body}{nfe_check_digit(body)}"


@dataclass(frozen=True, slots=True)
class InvoiceTaxes:
    amount: Decimal  # the goods without the tax
    taxes: Decimal
    total: Decimal  # what the customer paid


def invoice_taxes(total: Decimal, rate: Decimal) -> InvoiceTaxes:
    """ICMS "por dentro": the rate applies to a base that includes the tax itself, so the tax is
    `total * rate`, inside the total the customer paid (Brazilian prices include it). Rounded to
    cents half-even (banker's rounding: no upward drift over many invoices);
    `amount + taxes == total` always."""
    if total < 0:
        raise ValueError("an invoice total cannot be negative")
    if not Decimal(0) <= rate < Decimal(1):
        raise ValueError("the tax rate must be at least 0 and below 1")
    taxes = (total * rate).quantize(CENT, rounding=ROUND_HALF_EVEN)
    return InvoiceTaxes(amount=total - taxes, taxes=taxes, total=total)


# --- accounts payable and receivable (ADR 0013) ----------------------------------------------

MIN_TERMS_DAYS: Final = 0
MAX_TERMS_DAYS: Final = 365


class AccountCategory(StrEnum):
    INCOME = "income"
    EXPENSE = "expense"


class SupplierStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"


class PayableStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    OVERDUE = "overdue"
    CANCELLED = "cancelled"


class ReceivableStatus(StrEnum):
    PENDING = "pending"
    RECEIVED = "received"
    OVERDUE = "overdue"
    CANCELLED = "cancelled"


def due_date(issue_date: date, terms_days: int) -> date:
    """The day an account is due: its issue date plus its payment terms (0 to 365 days)."""
    if not MIN_TERMS_DAYS <= terms_days <= MAX_TERMS_DAYS:
        raise ValueError(f"payment terms must be {MIN_TERMS_DAYS} to {MAX_TERMS_DAYS} days")
    return issue_date + timedelta(days=terms_days)


def is_overdue(due: date, today: date) -> bool:
    """Past its due date: the due day itself is still in time."""
    return due < today


PAYABLE_TRANSITIONS: Final[Mapping[PayableStatus, frozenset[PayableStatus]]] = {
    PayableStatus.PENDING: frozenset(
        {PayableStatus.PAID, PayableStatus.OVERDUE, PayableStatus.CANCELLED}
    ),
    PayableStatus.OVERDUE: frozenset({PayableStatus.PAID, PayableStatus.CANCELLED}),
    PayableStatus.PAID: frozenset(),
    PayableStatus.CANCELLED: frozenset(),
}
RECEIVABLE_TRANSITIONS: Final[Mapping[ReceivableStatus, frozenset[ReceivableStatus]]] = {
    ReceivableStatus.PENDING: frozenset(
        {ReceivableStatus.RECEIVED, ReceivableStatus.OVERDUE, ReceivableStatus.CANCELLED}
    ),
    ReceivableStatus.OVERDUE: frozenset({ReceivableStatus.RECEIVED, ReceivableStatus.CANCELLED}),
    ReceivableStatus.RECEIVED: frozenset(),
    ReceivableStatus.CANCELLED: frozenset(),
}

Status = TypeVar("Status", PayableStatus, ReceivableStatus)


class AccountTransitionError(Exception):
    def __init__(self, what: str, current: StrEnum, target: StrEnum) -> None:
        super().__init__(f"{what} is {current}: it cannot become {target}.")


def account_transition(
    what: str, machine: Mapping[Status, frozenset[Status]], current: Status, target: Status
) -> Status:
    """The new status of an account, or AccountTransitionError when `machine` has no such edge."""
    if target not in machine[current]:
        raise AccountTransitionError(what, current, target)
    return target


# An order's account receivable mirrors its payment (ADR 0013).
_RECEIVABLE_OF_PAYMENT: Final[Mapping[PaymentStatus, ReceivableStatus]] = {
    PaymentStatus.PENDING: ReceivableStatus.PENDING,
    PaymentStatus.PROCESSING: ReceivableStatus.PENDING,
    PaymentStatus.APPROVED: ReceivableStatus.RECEIVED,
    PaymentStatus.DECLINED: ReceivableStatus.CANCELLED,
    PaymentStatus.CANCELLED: ReceivableStatus.CANCELLED,
    PaymentStatus.REFUNDED: ReceivableStatus.CANCELLED,
}
PAYMENT_CANCEL_REASONS: Final[Mapping[PaymentStatus, str]] = {
    PaymentStatus.DECLINED: "The payment was declined.",
    PaymentStatus.CANCELLED: "The payment was cancelled.",
    PaymentStatus.REFUNDED: "The payment was refunded.",
}


def receivable_for_payment(
    current: ReceivableStatus | None, payment: PaymentStatus
) -> ReceivableStatus | None:
    """What the order's account receivable becomes when its payment is in `payment`: the status
    to open it in (`current` None) or to move it to, or None to leave it. A payment still being
    charged leaves an overdue account overdue; a refund undoes a receipt (`received →
    cancelled`, the one edge only a payment takes); an account already settled otherwise stays
    (the payment machine never goes back)."""
    target = _RECEIVABLE_OF_PAYMENT[payment]
    if current is None:
        return target
    if current is target:
        return None
    if target in RECEIVABLE_TRANSITIONS[current]:
        return target
    if current is ReceivableStatus.RECEIVED and payment is PaymentStatus.REFUNDED:
        return ReceivableStatus.CANCELLED
    return None
