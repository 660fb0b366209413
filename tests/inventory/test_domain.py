"""The inventory service's pure rules: SKU, price, slugs, the category hierarchy, stock
arithmetic, the reservation state machine and what a failed reservation reports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID, uuid4

import pytest

from services.inventory import domain
from services.inventory.domain import Decision, Line, ReservationStatus, Shortage, StockLevel
from services.platform.core.rules import FieldError
from services.platform.http.versioning import if_match_satisfied

NOW = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)


# --- catalogue ------------------------------------------------------------------------------


@pytest.mark.parametrize("sku", ["ABC", "NB-DELL-001", "A" * 100, "123-456"])
def test_valid_skus(sku: str) -> None:
    assert domain.sku_errors(sku) == []


@pytest.mark.parametrize("sku", ["AB", "A" * 101, "nb-dell", "NB_DELL", "NB DELL", "NÔ-1", ""])
def test_invalid_skus(sku: str) -> None:
    assert [e.field for e in domain.sku_errors(sku)] == ["sku"]


@pytest.mark.parametrize(
    ("text", "value"),
    [("0.01", Decimal("0.01")), ("9999999.99", Decimal("9999999.99")), ("12.50", Decimal("12.5"))],
)
def test_prices_in_range(text: str, value: Decimal) -> None:
    assert domain.parse_price(text) == value
    assert domain.price_errors(text) == []


@pytest.mark.parametrize("text", ["0.00", "10000000.00", "12.5", "12", "-1.00", "1e3", "abc", ""])
def test_prices_out_of_range_or_malformed(text: str) -> None:
    assert domain.parse_price(text) is None
    assert [e.field for e in domain.price_errors(text)] == ["price"]


def test_price_wire_form_has_two_decimals() -> None:
    assert domain.format_price(Decimal("12.5")) == "12.50"
    assert domain.format_price(Decimal("1E+2")) == "100.00"


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Notebooks", "notebooks"),
        ("Eletrônicos & Informática", "eletronicos-informatica"),
        ("  Hello   World  ", "hello-world"),
        ("!!!", ""),
    ],
)
def test_slugify(name: str, slug: str) -> None:
    assert domain.slugify(name) == slug


def test_slug_rules() -> None:
    assert domain.slug_errors("notebooks-gamer") == []
    for bad in ("", "Notebooks", "a--b", "-a", "a" * 121):
        assert [e.field for e in domain.slug_errors(bad)] == ["slug"]


def test_category_cycles() -> None:
    root, child, grandchild, other = uuid4(), uuid4(), uuid4(), uuid4()
    parents: dict[UUID, UUID | None] = {root: None, child: root, grandchild: child, other: None}
    assert domain.creates_cycle(root, grandchild, parents)  # below its own descendant
    assert domain.creates_cycle(child, child, parents)  # its own parent
    assert not domain.creates_cycle(grandchild, other, parents)
    assert not domain.creates_cycle(child, None, parents)  # becoming a root
    # A tree that is already broken is reported rather than walked forever.
    looped: dict[UUID, UUID | None] = {root: child, child: root, other: None}
    assert domain.creates_cycle(other, root, looped)


def test_warehouse_codes() -> None:
    assert domain.warehouse_code_errors("SP-01") == []
    assert domain.warehouse_code_errors("X")
    assert domain.warehouse_code_errors("sp-01")


# --- stock ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "ok"),
    [
        ("Nota fiscal 123", True),
        ("abcde", True),
        ("abcd", False),
        ("     ", False),
        ("x" * 256, False),
    ],
)
def test_movement_reason(reason: str, ok: bool) -> None:
    assert (domain.reason_errors(reason) == []) is ok


def test_receive_adds_to_on_hand() -> None:
    assert domain.receive(StockLevel(5, 2), 10) == StockLevel(15, 2)
    assert isinstance(domain.receive(StockLevel(5, 2), 0), FieldError)
    assert isinstance(domain.receive(StockLevel(domain.MAX_QUANTITY, 0), 1), FieldError)


def test_adjust_never_below_zero_nor_below_reserved() -> None:
    assert domain.adjust(StockLevel(10, 3), -7) == StockLevel(3, 3)
    assert domain.adjust(StockLevel(10, 3), 5) == StockLevel(15, 3)
    below_reserved = domain.adjust(StockLevel(10, 3), -8)
    assert isinstance(below_reserved, FieldError)
    assert "reserved" in below_reserved.message
    below_zero = domain.adjust(StockLevel(10, 0), -11)
    assert isinstance(below_zero, FieldError)
    assert "below zero" in below_zero.message
    assert isinstance(domain.adjust(StockLevel(10, 0), 0), FieldError)


def test_stock_invariants() -> None:
    assert StockLevel(10, 4).available == 6
    assert StockLevel(0, 0).is_valid()
    assert not StockLevel(3, 4).is_valid()
    assert not StockLevel(-1, 0).is_valid()
    assert not StockLevel(5, -1).is_valid()


def test_low_stock_includes_the_minimum() -> None:
    assert domain.is_low(10, 10)
    assert domain.is_low(0, 0)
    assert not domain.is_low(11, 10)


# --- reservations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "target", "decision"),
    [
        (ReservationStatus.PENDING, ReservationStatus.CONFIRMED, Decision.APPLY),
        (ReservationStatus.PENDING, ReservationStatus.RELEASED, Decision.APPLY),
        (ReservationStatus.CONFIRMED, ReservationStatus.CONFIRMED, Decision.IGNORE),
        (ReservationStatus.RELEASED, ReservationStatus.RELEASED, Decision.IGNORE),
        (ReservationStatus.RELEASED, ReservationStatus.CONFIRMED, Decision.REFUSE),
        (ReservationStatus.CONFIRMED, ReservationStatus.RELEASED, Decision.REFUSE),
        (ReservationStatus.CONFIRMED, ReservationStatus.PENDING, Decision.REFUSE),
    ],
)
def test_reservation_state_machine(
    current: ReservationStatus, target: ReservationStatus, decision: Decision
) -> None:
    assert domain.decide(current, target) is decision


def test_reservations_expire_after_fifteen_minutes() -> None:
    expiry = domain.expires_at(NOW)
    assert expiry == NOW + timedelta(minutes=15)
    assert not domain.is_expired(expiry, NOW + timedelta(minutes=14, seconds=59))
    assert domain.is_expired(expiry, NOW + timedelta(minutes=15))
    assert domain.is_expired(expiry, NOW + timedelta(minutes=16))


def test_merge_lines_sums_and_sorts_by_product() -> None:
    a, b = sorted([uuid4(), uuid4()], key=str)
    merged = domain.merge_lines([Line(b, 1), Line(a, 2), Line(b, 3)])
    assert merged == [Line(a, 2), Line(b, 4)]


def test_shortages_report_the_short_lines() -> None:
    a, b, unknown = uuid4(), uuid4(), uuid4()
    lines = [Line(a, 2), Line(b, 5), Line(unknown, 1)]
    report = domain.shortages(lines, {a: 10, b: 3})
    assert report == [Shortage(b, 5, 3), Shortage(unknown, 1, 0)]
    # Nothing short any more (units came back meanwhile): every line is reported.
    assert domain.shortages([Line(a, 2)], {a: 10}) == [Shortage(a, 2, 10)]


def test_failure_reason_codes() -> None:
    assert domain.failure_reason([uuid4()]) == "product_not_found"
    assert domain.failure_reason([]) == "insufficient_stock"


def test_if_match() -> None:
    assert if_match_satisfied(None, 3)
    assert if_match_satisfied('"3"', 3)
    assert if_match_satisfied('"1", "3"', 3)
    assert if_match_satisfied("*", 3)
    assert not if_match_satisfied('"2"', 3)
