"""The sales service's pure rules: customer documents (CPF/CNPJ), default addresses, what a
product description does to the catalogue replica (ADR 0016), and orders — their prices,
numbers, status machine and the saga's decision (ADR 0018).

A customer's document (CPF/CNPJ) is checked by the kit's `parse_document`, the rule financial's
suppliers share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Final

from services.platform import FieldError

MAX_ADDRESSES = 10


class CustomerStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"


def initial_default(flags: Sequence[bool]) -> int | FieldError | None:
    """Which of a new customer's addresses is the default: the one flagged, else the first;
    None without addresses; more than one flagged is refused."""
    flagged = [index for index, flag in enumerate(flags) if flag]
    if len(flagged) > 1:
        return FieldError("addresses", "at most one address can be the default")
    if flagged:
        return flagged[0]
    return 0 if flags else None


class ReplicaChange(StrEnum):
    """What a description of a product (an event, or inventory's answer) does to its row."""

    INSERT = "insert"  # not replicated yet
    UPDATE = "update"  # a newer version of the row
    STALE = "stale"  # the same version (a redelivery) or an older one: nothing changes
    SKU_CHANGED = "sku_changed"  # a newer version under another SKU: inventory never does that


@dataclass(frozen=True)
class ReplicaVersion:
    version: int
    sku: str


def replica_change(stored: ReplicaVersion | None, incoming: ReplicaVersion) -> ReplicaChange:
    """Last writer wins by inventory's version; the SKU is immutable (a tombstone included)."""
    if stored is None:
        return ReplicaChange.INSERT
    if incoming.version <= stored.version:
        return ReplicaChange.STALE
    if incoming.sku != stored.sku:
        return ReplicaChange.SKU_CHANGED
    return ReplicaChange.UPDATE


# --- orders ---------------------------------------------------------------------------------


class OrderStatus(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    SHIPPED = "shipped"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class StockStatus(StrEnum):
    PENDING = "pending"
    RESERVED = "reserved"
    FAILED = "failed"
    RELEASED = "released"


class PaymentStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DECLINED = "declined"
    REFUNDED = "refunded"


_ORDER_TRANSITIONS: Final[Mapping[OrderStatus, frozenset[OrderStatus]]] = {
    OrderStatus.PENDING: frozenset({OrderStatus.CONFIRMED, OrderStatus.CANCELLED}),
    OrderStatus.CONFIRMED: frozenset({OrderStatus.SHIPPED, OrderStatus.CANCELLED}),
    OrderStatus.SHIPPED: frozenset({OrderStatus.COMPLETED}),
    OrderStatus.COMPLETED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
}


class IllegalTransitionError(Exception):
    def __init__(self, current: OrderStatus, target: OrderStatus) -> None:
        super().__init__(f"An order that is {current} cannot become {target}.")
        self.current = current
        self.target = target


def transition(current: OrderStatus, target: OrderStatus) -> OrderStatus:
    """The new status, or IllegalTransitionError when the machine has no such edge."""
    if target not in _ORDER_TRANSITIONS[current]:
        raise IllegalTransitionError(current, target)
    return target


CENT: Final = Decimal("0.01")
SHIPPING_FEE: Final = Decimal("25.00")
FREE_SHIPPING_FROM: Final = Decimal("1000.00")
MAX_AMOUNT: Final = Decimal("999999999999.99")  # twelve digits before the point, as the spec


def money(value: Decimal) -> str:
    return str(value.quantize(CENT, rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class PricedLine:
    unit_price: Decimal
    quantity: int
    discount: Decimal

    @property
    def amount(self) -> Decimal:
        return self.unit_price * self.quantity

    @property
    def total(self) -> Decimal:
        return self.amount - self.discount


@dataclass(frozen=True)
class Totals:
    subtotal: Decimal
    discount: Decimal
    shipping: Decimal
    total: Decimal


def house_shipping(goods: Decimal) -> Decimal:
    """The shipping fee when staff set none: a flat fee, free from a threshold of goods."""
    return Decimal("0.00") if goods >= FREE_SHIPPING_FROM else SHIPPING_FEE


def line_errors(lines: Sequence[PricedLine]) -> list[FieldError]:
    return [
        FieldError(f"items[{index}].discount", "must not exceed the line's amount")
        for index, line in enumerate(lines)
        if line.discount > line.amount
    ]


def totals(lines: Sequence[PricedLine], shipping: Decimal | None) -> Totals | FieldError:
    """subtotal (before discounts), discount, shipping (the house rule's unless given) and
    total = subtotal - discount + shipping; a total beyond what the contract can carry is
    refused."""
    subtotal = sum((line.amount for line in lines), Decimal("0.00"))
    discount = sum((line.discount for line in lines), Decimal("0.00"))
    fee = house_shipping(subtotal - discount) if shipping is None else shipping
    total = subtotal - discount + fee
    if total > MAX_AMOUNT or subtotal > MAX_AMOUNT:
        return FieldError("items", "the order's total is too large")
    return Totals(subtotal, discount, fee, total)


def order_number(year: int, sequence: int) -> str:
    """`ORD-YYYY-NNNNNN`: the year's sequence, consecutive from 1."""
    return f"ORD-{year:04d}-{sequence:06d}"


MAX_ORDERS_PER_YEAR: Final = 999_999


class SagaStep(StrEnum):
    STOCK = "stock"
    PAYMENT = "payment"


def waiting_for(status: OrderStatus, stock: StockStatus, payment: PaymentStatus) -> list[SagaStep]:
    """What a pending order still waits for (shown by the API)."""
    if status is not OrderStatus.PENDING:
        return []
    waiting = []
    if stock is StockStatus.PENDING:
        waiting.append(SagaStep.STOCK)
    if payment is PaymentStatus.PENDING:
        waiting.append(SagaStep.PAYMENT)
    return waiting


class SagaOutcome(StrEnum):
    CONFIRM = "confirm"
    CANCEL = "cancel"
    WAIT = "wait"
    NOTHING = "nothing"  # decided already: the answer is recorded, the status stays


def decide(status: OrderStatus, stock: StockStatus, payment: PaymentStatus) -> SagaOutcome:
    """What the order's status does once an answer is recorded: confirmed when its stock is
    reserved and its payment approved, cancelled as soon as either fails (or its reservation
    is released under a confirmed order: the reserved units are gone), else it waits."""
    failed = stock in (StockStatus.FAILED, StockStatus.RELEASED) or payment in (
        PaymentStatus.DECLINED,
        PaymentStatus.REFUNDED,
    )
    if status is OrderStatus.PENDING:
        if failed:
            return SagaOutcome.CANCEL
        if stock is StockStatus.RESERVED and payment is PaymentStatus.APPROVED:
            return SagaOutcome.CONFIRM
        return SagaOutcome.WAIT
    if status is OrderStatus.CONFIRMED and stock is StockStatus.RELEASED:
        return SagaOutcome.CANCEL
    return SagaOutcome.NOTHING


def stock_answer(current: StockStatus, answer: StockStatus) -> StockStatus:
    """The stock status after an answer: `released` is final (a late `reserved` or `failed`
    of the same reservation changes nothing); otherwise the newer answer holds."""
    return current if current is StockStatus.RELEASED else answer


def payment_answer(current: PaymentStatus, answer: PaymentStatus) -> PaymentStatus:
    """The payment status after an answer: `refunded` is final (only an approval can be
    refunded, so a late `approved` after it changes nothing)."""
    return current if current is PaymentStatus.REFUNDED else answer
