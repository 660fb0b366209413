"""The order rules of sales' domain, table-tested: prices and totals, numbers, the status
machine, the saga's decision for every combination of answers, and what logistics' news does
to an order."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from itertools import permutations, product

import pytest

from services.platform import FieldError
from services.sales import domain
from services.sales.domain import (
    OrderStatus,
    PaymentStatus,
    PricedLine,
    SagaOutcome,
    SagaStep,
    Shipment,
    ShipmentStatus,
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
    (OrderStatus.SHIPPED, OrderStatus.CANCELLED),  # only while its shipment failed: cancel_problem
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


# --- logistics' news (ADR 0022) ---------------------------------------------------------------

SHIPMENT = uuid.UUID("3f4a5b6c-7d8e-4f9a-8b1c-2d3e4f5a6b7c")
RETRY = uuid.UUID("4a5b6c7d-8e9f-4a0b-9c1d-2e3f4a5b6c7d")
AT = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
DISPATCHED = Shipment(
    SHIPMENT, tracking_code="BR7K3M9Q2X4ZP", carrier_code="CORREIOS", dispatched_at=AT
)
DELIVERED = Shipment(SHIPMENT, tracking_code="BR7K3M9Q2X4ZP", delivered_at=AT)
FAILED = Shipment(SHIPMENT, tracking_code=None, failed_at=AT, failure_reason="Address not found")


@pytest.mark.parametrize("arrival", list(permutations([DISPATCHED, DELIVERED, FAILED])))
def test_a_shipments_facts_add_up_in_any_order(arrival: tuple[Shipment, ...]) -> None:
    shipment: Shipment | None = None
    for news in arrival:
        shipment = domain.shipment_heard(shipment, news) or shipment
    assert shipment == Shipment(
        SHIPMENT,
        tracking_code="BR7K3M9Q2X4ZP",
        carrier_code="CORREIOS",
        dispatched_at=AT,
        delivered_at=AT,
        failed_at=AT,
        failure_reason="Address not found",
    )
    assert shipment.status is ShipmentStatus.DELIVERED


def test_a_repeated_fact_is_stale() -> None:
    assert domain.shipment_heard(DISPATCHED, DISPATCHED) is None


def test_a_failure_outranks_its_dispatch() -> None:
    failed = domain.shipment_heard(DISPATCHED, FAILED)
    assert failed is not None
    assert failed.status is ShipmentStatus.FAILED
    assert failed.tracking_code == "BR7K3M9Q2X4ZP"  # a failure without a code keeps it


def test_a_retried_shipments_dispatch_replaces_the_failed_one() -> None:
    failed = domain.shipment_heard(DISPATCHED, FAILED)
    retried = Shipment(
        RETRY, tracking_code="QX4ZP7K3M9BR2", carrier_code="JADLOG", dispatched_at=AT
    )
    assert domain.shipment_heard(failed, retried) == retried


def test_an_old_shipments_failure_arriving_after_its_retry_is_stale() -> None:
    retried = Shipment(
        RETRY, tracking_code="QX4ZP7K3M9BR2", carrier_code="JADLOG", dispatched_at=AT
    )
    assert domain.shipment_heard(retried, FAILED) is None
    retry_failed = Shipment(RETRY, failed_at=AT, failure_reason="Refused")
    assert domain.shipment_heard(FAILED, retry_failed) == retry_failed


def test_nothing_replaces_a_delivered_shipment() -> None:
    other = Shipment(RETRY, carrier_code="JADLOG", dispatched_at=AT)
    assert domain.shipment_heard(DELIVERED, other) is None


SHIPPED, COMPLETED = OrderStatus.SHIPPED, OrderStatus.COMPLETED


@pytest.mark.parametrize(
    ("status", "shipment", "moves"),
    [
        (OrderStatus.CONFIRMED, DISPATCHED, [SHIPPED]),
        (OrderStatus.CONFIRMED, DELIVERED, []),  # shipped needs the dispatch's carrier: wait
        (OrderStatus.CONFIRMED, FAILED, []),
        (OrderStatus.CONFIRMED, replace(DISPATCHED, delivered_at=AT), [SHIPPED, COMPLETED]),
        (OrderStatus.SHIPPED, DISPATCHED, []),
        (OrderStatus.SHIPPED, replace(DISPATCHED, failed_at=AT), []),
        (OrderStatus.SHIPPED, DELIVERED, [COMPLETED]),
        (OrderStatus.COMPLETED, replace(DISPATCHED, delivered_at=AT), []),
    ],
)
def test_what_the_shipment_moves(
    status: OrderStatus, shipment: Shipment, moves: list[OrderStatus]
) -> None:
    assert domain.shipment_moves(status, shipment) == moves


@pytest.mark.parametrize(
    ("status", "shipment", "cancellable"),
    [
        (OrderStatus.PENDING, None, True),
        (OrderStatus.CONFIRMED, None, True),
        (OrderStatus.CONFIRMED, ShipmentStatus.FAILED, True),
        (OrderStatus.SHIPPED, ShipmentStatus.DISPATCHED, False),
        (OrderStatus.SHIPPED, ShipmentStatus.FAILED, True),
        (OrderStatus.COMPLETED, ShipmentStatus.DELIVERED, False),
        (OrderStatus.CANCELLED, None, False),
    ],
)
def test_who_can_be_cancelled(
    status: OrderStatus, shipment: ShipmentStatus | None, cancellable: bool
) -> None:
    assert (domain.cancel_problem(status, shipment) is None) is cancellable
