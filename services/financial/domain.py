"""The financial service's pure rules: the payment status machine, what an order event does to
a payment, money on the wire, and the ranges a ledger summary may span (table-tested in
tests/financial/test_domain.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Final


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


class CancelAction(StrEnum):
    """What `sales.order.cancelled` does to the order's payment."""

    REFUND = "refund"  # money was taken: give it back
    CANCEL = "cancel"  # not charged yet: stop it
    NOTHING = "nothing"  # never charged (declined) or already refunded / cancelled


def on_order_cancelled(current: PaymentStatus) -> CancelAction:
    if current is PaymentStatus.APPROVED:
        return CancelAction.REFUND
    if can_transition(current, PaymentStatus.CANCELLED):
        return CancelAction.CANCEL
    # declined is the usual saga path (sales cancels the order because its payment failed);
    # refunded / cancelled: a second cancellation of the same order.
    return CancelAction.NOTHING


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
