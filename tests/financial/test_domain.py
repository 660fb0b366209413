"""The financial rules of domain.py, table-tested: the payment status machine, what a
cancellation does to each status, order facts and the ranges a summary may span."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from services.financial import domain
from services.financial.domain import (
    CancelAction,
    IllegalTransitionError,
    OrderFacts,
    PaymentStatus,
    SummaryPeriod,
)
from services.platform import format_amount

S = PaymentStatus
LEGAL = {
    (S.PENDING, S.PROCESSING),
    (S.PENDING, S.CANCELLED),
    (S.PROCESSING, S.APPROVED),
    (S.PROCESSING, S.DECLINED),
    (S.PROCESSING, S.CANCELLED),
    (S.APPROVED, S.REFUNDED),
}
EVERY_PAIR = [(current, target) for current in S for target in S]


@pytest.mark.parametrize(("current", "target"), EVERY_PAIR)
def test_the_status_machine_has_exactly_the_designed_edges(
    current: PaymentStatus, target: PaymentStatus
) -> None:
    assert domain.can_transition(current, target) is ((current, target) in LEGAL)
    if (current, target) in LEGAL:
        assert domain.transition(current, target) is target
    else:
        with pytest.raises(IllegalTransitionError, match=f"payment is {current}"):
            domain.transition(current, target)


@pytest.mark.parametrize(
    ("current", "action"),
    [
        (S.PENDING, CancelAction.CANCEL),
        (S.PROCESSING, CancelAction.AWAIT_OUTCOME),
        (S.APPROVED, CancelAction.REFUND),
        (S.DECLINED, CancelAction.NOTHING),
        (S.REFUNDED, CancelAction.NOTHING),
        (S.CANCELLED, CancelAction.NOTHING),
    ],
)
def test_what_a_cancelled_order_does_to_its_payment(
    current: PaymentStatus, action: CancelAction
) -> None:
    assert domain.on_order_cancelled(current) is action


@pytest.mark.parametrize("target", list(S))
def test_the_guard_of_a_move_is_every_status_with_an_edge_to_it(target: PaymentStatus) -> None:
    assert domain.sources(target) == {current for current, to in LEGAL if to is target}


@pytest.mark.parametrize(
    ("current", "cancelled", "due"),
    [
        (S.APPROVED, True, True),
        (S.APPROVED, False, False),
        (S.PENDING, True, False),  # cancelled outright, never charged
        (S.PROCESSING, True, False),  # its outcome is not known yet
        (S.DECLINED, True, False),
        (S.REFUNDED, True, False),  # refunded already
        (S.CANCELLED, True, False),
    ],
)
def test_a_refund_is_due_for_an_approved_payment_of_a_cancelled_order(
    current: PaymentStatus, cancelled: bool, due: bool
) -> None:
    assert domain.refund_due(current, order_cancelled=cancelled) is due


def test_order_facts_name_what_differs() -> None:
    facts = OrderFacts(Decimal("724.80"), "BRL", "pix")
    assert facts.differences(OrderFacts(Decimal("724.80"), "BRL", "pix")) == []
    assert facts.differences(OrderFacts(Decimal("724.8"), "BRL", "pix")) == []
    other = OrderFacts(Decimal("1.00"), "USD", "boleto")
    assert facts.differences(other) == ["amount", "currency", "method"]


@pytest.mark.parametrize(
    ("value", "wire"),
    [(Decimal("724.8"), "724.80"), (Decimal("0"), "0.00"), (Decimal("1E+3"), "1000.00")],
)
def test_amounts_on_the_wire_have_two_decimals_and_no_exponent(value: Decimal, wire: str) -> None:
    assert format_amount(value) == wire


@pytest.mark.parametrize(
    ("start", "end", "period", "problem"),
    [
        (date(2025, 1, 1), date(2025, 1, 1), SummaryPeriod.DAY, None),
        (date(2025, 1, 2), date(2025, 1, 1), SummaryPeriod.MONTH, "must not be before `from`"),
        (date(2024, 1, 1), date(2024, 12, 31), SummaryPeriod.DAY, None),  # 366 days (leap)
        (date(2025, 1, 1), date(2026, 1, 2), SummaryPeriod.DAY, "at most 366 days"),
        (date(2025, 1, 31), date(2034, 12, 1), SummaryPeriod.MONTH, None),  # 120 months
        (date(2025, 1, 31), date(2035, 1, 1), SummaryPeriod.MONTH, "at most 120 months"),
    ],
)
def test_the_range_a_summary_may_span(
    start: date, end: date, period: SummaryPeriod, problem: str | None
) -> None:
    found = domain.summary_range_problem(start, end, period)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


def test_a_month_starts_on_its_first_day() -> None:
    assert domain.month_start(date(2025, 2, 28)) == date(2025, 2, 1)
