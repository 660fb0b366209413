"""The order rules of sales' domain, table-tested: prices and totals, numbers, the status
machine, and the saga's decision for every combination of answers."""

from __future__ import annotations

from decimal import Decimal
from itertools import product

import pytest

from services.platform import FieldError
from services.sales import domain
from services.sales.domain import (
    OrderStatus,
    PaymentStatus,
    PricedLine,
    SagaOutcome,
    SagaStep,
    StockStatus,
)


def _line(price: str, quantity: int, discount: str = "0.00") -> PricedLine:
    return PricedLine(Decimal(price), quantity, Decimal(discount))


@pytest.mark.parametrize(
    ("lines", "shipping", "expected"),
    [
        # below the free-shipping threshold: the flat fee
        ([_line("349.90", 2)], None, ("699.80", "0.00", "25.00", "724.80")),
        # from 1,000.00 of goods (after discounts) shipping is free
        ([_line("500.00", 2)], None, ("1000.00", "0.00", "0.00", "1000.00")),
        # a discount that brings the goods under the threshold brings the fee back
        ([_line("500.00", 2, "0.01")], None, ("1000.00", "0.01", "25.00", "1024.99")),
        # staff's shipping fee wins over the rule
        (
            [_line("10.00", 1), _line("5.50", 3, "1.50")],
            Decimal("7.00"),
            ("26.50", "1.50", "7.00", "32.00"),
        ),
    ],
)
def test_totals_are_subtotal_minus_discount_plus_shipping(
    lines: list[PricedLine], shipping: Decimal | None, expected: tuple[str, str, str, str]
) -> None:
    totals = domain.totals(lines, shipping)
    assert not isinstance(totals, FieldError)
    got = tuple(
        domain.money(v) for v in (totals.subtotal, totals.discount, totals.shipping, totals.total)
    )
    assert got == expected
    assert totals.total == totals.subtotal - totals.discount + totals.shipping


def test_a_total_beyond_the_contract_is_refused() -> None:
    refused = domain.totals([_line("9999999.99", 1_000_000)], None)
    assert isinstance(refused, FieldError)
    assert refused.field == "items"


def test_a_discount_larger_than_its_line_is_refused() -> None:
    errors = domain.line_errors([_line("10.00", 2, "20.00"), _line("10.00", 2, "20.01")])
    assert [error.field for error in errors] == ["items[1].discount"]


@pytest.mark.parametrize(
    ("year", "sequence", "number"),
    [
        (2025, 1, "ORD-2025-000001"),
        (2026, 42, "ORD-2026-000042"),
        (2026, 999_999, "ORD-2026-999999"),
    ],
)
def test_order_numbers(year: int, sequence: int, number: str) -> None:
    assert domain.order_number(year, sequence) == number


LEGAL = {
    (OrderStatus.PENDING, OrderStatus.CONFIRMED),
    (OrderStatus.PENDING, OrderStatus.CANCELLED),
    (OrderStatus.CONFIRMED, OrderStatus.SHIPPED),
    (OrderStatus.CONFIRMED, OrderStatus.CANCELLED),
    (OrderStatus.SHIPPED, OrderStatus.COMPLETED),
}


@pytest.mark.parametrize(("current", "target"), list(product(OrderStatus, OrderStatus)))
def test_the_status_machine(current: OrderStatus, target: OrderStatus) -> None:
    if (current, target) in LEGAL:
        assert domain.transition(current, target) is target
    else:
        with pytest.raises(
            domain.IllegalTransitionError, match=f"{current} cannot become {target}"
        ):
            domain.transition(current, target)


FAILED_STOCK = {StockStatus.FAILED, StockStatus.RELEASED}
FAILED_PAYMENT = {PaymentStatus.DECLINED, PaymentStatus.REFUNDED}


@pytest.mark.parametrize(("stock", "payment"), list(product(StockStatus, PaymentStatus)))
def test_a_pending_order_is_decided_by_both_answers(
    stock: StockStatus, payment: PaymentStatus
) -> None:
    outcome = domain.decide(OrderStatus.PENDING, stock, payment)
    if stock in FAILED_STOCK or payment in FAILED_PAYMENT:
        assert outcome is SagaOutcome.CANCEL
    elif stock is StockStatus.RESERVED and payment is PaymentStatus.APPROVED:
        assert outcome is SagaOutcome.CONFIRM
    else:
        assert outcome is SagaOutcome.WAIT
        waiting = domain.waiting_for(OrderStatus.PENDING, stock, payment)
        assert (SagaStep.STOCK in waiting) == (stock is StockStatus.PENDING)
        assert (SagaStep.PAYMENT in waiting) == (payment is PaymentStatus.PENDING)


@pytest.mark.parametrize(("stock", "payment"), list(product(StockStatus, PaymentStatus)))
def test_a_decided_order_stays_unless_its_confirmed_stock_is_released(
    stock: StockStatus, payment: PaymentStatus
) -> None:
    for status in (OrderStatus.SHIPPED, OrderStatus.COMPLETED, OrderStatus.CANCELLED):
        assert domain.decide(status, stock, payment) is SagaOutcome.NOTHING
        assert domain.waiting_for(status, stock, payment) == []
    confirmed = domain.decide(OrderStatus.CONFIRMED, stock, payment)
    expected = SagaOutcome.CANCEL if stock is StockStatus.RELEASED else SagaOutcome.NOTHING
    assert confirmed is expected


def test_released_and_refunded_are_final_answers() -> None:
    for answer in StockStatus:
        assert domain.stock_answer(StockStatus.RELEASED, answer) is StockStatus.RELEASED
        assert domain.stock_answer(StockStatus.PENDING, answer) is answer
    for paid in PaymentStatus:
        assert domain.payment_answer(PaymentStatus.REFUNDED, paid) is PaymentStatus.REFUNDED
        assert domain.payment_answer(PaymentStatus.PENDING, paid) is paid
