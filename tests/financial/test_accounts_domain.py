"""The rules of accounts payable and receivable without I/O (ADR 0013): due dates from payment
terms, overdue, both status machines, and what a payment does to its order's account
receivable."""

from __future__ import annotations

from datetime import date

import pytest

from services.financial import domain
from services.financial.domain import (
    PAYABLE_TRANSITIONS,
    RECEIVABLE_TRANSITIONS,
    AccountTransitionError,
    PayableStatus,
    PaymentStatus,
    ReceivableStatus,
)


@pytest.mark.parametrize(
    ("issued", "terms", "due"),
    [
        (date(2025, 1, 10), 0, date(2025, 1, 10)),
        (date(2025, 1, 10), 30, date(2025, 2, 9)),
        (date(2024, 2, 28), 1, date(2024, 2, 29)),  # a leap day
        (date(2025, 12, 31), 1, date(2026, 1, 1)),
        (date(2025, 1, 1), 365, date(2026, 1, 1)),
    ],
)
def test_the_due_date_is_the_issue_date_plus_the_terms(issued: date, terms: int, due: date) -> None:
    assert domain.due_date(issued, terms) == due


@pytest.mark.parametrize("terms", [-1, 366])
def test_terms_outside_0_to_365_days_are_refused(terms: int) -> None:
    with pytest.raises(ValueError, match="0 to 365 days"):
        domain.due_date(date(2025, 1, 1), terms)


@pytest.mark.parametrize(
    ("due", "today", "overdue"),
    [
        (date(2025, 2, 9), date(2025, 2, 8), False),
        (date(2025, 2, 9), date(2025, 2, 9), False),  # the due day itself is in time
        (date(2025, 2, 9), date(2025, 2, 10), True),
    ],
)
def test_overdue_is_after_the_due_day(due: date, today: date, overdue: bool) -> None:
    assert domain.is_overdue(due, today) is overdue


P = PayableStatus
PAYABLE_EDGES = {
    (P.PENDING, P.PAID),
    (P.PENDING, P.OVERDUE),
    (P.PENDING, P.CANCELLED),
    (P.OVERDUE, P.PAID),
    (P.OVERDUE, P.CANCELLED),
}


@pytest.mark.parametrize("current", list(P))
@pytest.mark.parametrize("target", list(P))
def test_the_payable_machine(current: PayableStatus, target: PayableStatus) -> None:
    if (current, target) in PAYABLE_EDGES:
        moved = domain.account_transition("Account payable", PAYABLE_TRANSITIONS, current, target)
        assert moved is target
    else:
        with pytest.raises(AccountTransitionError) as refused:
            domain.account_transition("Account payable", PAYABLE_TRANSITIONS, current, target)
        assert str(refused.value) == (f"Account payable is {current}: it cannot become {target}.")


R = ReceivableStatus
RECEIVABLE_EDGES = {
    (R.PENDING, R.RECEIVED),
    (R.PENDING, R.OVERDUE),
    (R.PENDING, R.CANCELLED),
    (R.OVERDUE, R.RECEIVED),
    (R.OVERDUE, R.CANCELLED),
}


@pytest.mark.parametrize("current", list(R))
@pytest.mark.parametrize("target", list(R))
def test_the_receivable_machine(current: ReceivableStatus, target: ReceivableStatus) -> None:
    legal = (current, target) in RECEIVABLE_EDGES
    if legal:
        assert domain.account_transition("x", RECEIVABLE_TRANSITIONS, current, target) is target
    else:
        with pytest.raises(AccountTransitionError):
            domain.account_transition("x", RECEIVABLE_TRANSITIONS, current, target)


Pay = PaymentStatus


@pytest.mark.parametrize(
    ("current", "payment", "becomes"),
    [
        # No account yet: opened as the payment stands.
        (None, Pay.PENDING, R.PENDING),
        (None, Pay.PROCESSING, R.PENDING),
        (None, Pay.APPROVED, R.RECEIVED),
        (None, Pay.DECLINED, R.CANCELLED),
        (None, Pay.CANCELLED, R.CANCELLED),
        (None, Pay.REFUNDED, R.CANCELLED),
        # An open account follows the payment's outcome.
        (R.PENDING, Pay.PROCESSING, None),
        (R.PENDING, Pay.APPROVED, R.RECEIVED),
        (R.PENDING, Pay.DECLINED, R.CANCELLED),
        (R.PENDING, Pay.CANCELLED, R.CANCELLED),
        (R.OVERDUE, Pay.PROCESSING, None),  # still being charged: stays overdue
        (R.OVERDUE, Pay.APPROVED, R.RECEIVED),
        (R.OVERDUE, Pay.DECLINED, R.CANCELLED),
        # A refund undoes the receipt; a repeat changes nothing.
        (R.RECEIVED, Pay.REFUNDED, R.CANCELLED),
        (R.RECEIVED, Pay.APPROVED, None),
        (R.CANCELLED, Pay.REFUNDED, None),
        (R.CANCELLED, Pay.DECLINED, None),
        # The payment machine never goes back; neither does the account.
        (R.RECEIVED, Pay.PENDING, None),
        (R.CANCELLED, Pay.APPROVED, None),
    ],
)
def test_an_orders_receivable_follows_its_payment(
    current: ReceivableStatus | None, payment: PaymentStatus, becomes: ReceivableStatus | None
) -> None:
    assert domain.receivable_for_payment(current, payment) is becomes


def test_every_payment_status_that_cancels_gives_a_reason() -> None:
    cancelling = {p for p in Pay if domain.receivable_for_payment(None, p) is R.CANCELLED}
    assert cancelling == set(domain.PAYMENT_CANCEL_REASONS)
