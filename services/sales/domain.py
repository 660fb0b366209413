"""The sales service's pure rules: customer documents (CPF/CNPJ), default addresses, what a
product description does to the catalogue replica (ADR 0016), and orders — their prices,
numbers, status machine and the saga's decisions: confirming (ADR 0018), shipping and
completing (ADR 0022).

A customer's document (CPF/CNPJ) is checked by the kit's `parse_document`, the rule financial's
suppliers share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Final
from uuid import UUID

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
    # Cancelling a shipped order is only allowed while its shipment has failed (`cancel_problem`).
    OrderStatus.SHIPPED: frozenset({OrderStatus.COMPLETED, OrderStatus.CANCELLED}),
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


# --- the saga after confirmation: logistics' news (ADR 0022) ----------------------------------


class ShipmentStatus(StrEnum):
    DISPATCHED = "dispatched"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True)
class Shipment:
    """What sales knows of the order's shipment: the facts logistics reported, each kept once
    heard, so the status they add up to does not depend on the order they came in."""

    shipment_id: UUID
    tracking_code: str | None = None
    carrier_code: str | None = None
    dispatched_at: datetime | None = None
    delivered_at: datetime | None = None
    failed_at: datetime | None = None
    failure_reason: str | None = None

    @property
    def status(self) -> ShipmentStatus:
        """A delivery outranks a failure of the same shipment (the parcel arrived after all),
        and a failure outranks its dispatch."""
        if self.delivered_at is not None:
            return ShipmentStatus.DELIVERED
        if self.failed_at is not None:
            return ShipmentStatus.FAILED
        return ShipmentStatus.DISPATCHED


def shipment_heard(current: Shipment | None, news: Shipment) -> Shipment | None:
    """The shipment after logistics' news (one fact of one shipment), or None when the news is
    stale and changes nothing.

    Facts of the same shipment add up. Another shipment is logistics' retry of a failed one
    (a retry exists only after a failure): its dispatch or delivery replaces what sales showed,
    clearing the failure; a failure of another shipment replaces only a failed one (the retry
    failed too) — against a live shipment it is the old shipment's news, arriving late."""
    if current is None:
        return news
    if news.shipment_id == current.shipment_id:
        merged = replace(
            current,
            tracking_code=news.tracking_code or current.tracking_code,
            carrier_code=news.carrier_code or current.carrier_code,
            dispatched_at=current.dispatched_at or news.dispatched_at,
            delivered_at=current.delivered_at or news.delivered_at,
            failed_at=current.failed_at or news.failed_at,
            failure_reason=current.failure_reason or news.failure_reason,
        )
        return None if merged == current else merged
    if current.status is ShipmentStatus.DELIVERED:
        return None
    if news.failed_at is not None and current.status is not ShipmentStatus.FAILED:
        return None
    return news


def shipment_moves(status: OrderStatus, shipment: Shipment) -> list[OrderStatus]:
    """The statuses the order moves through once the shipment's facts are recorded.

    A confirmed order ships when its dispatch is known (`sales.order.shipped` needs the
    carrier, which only the dispatch names), and completes when its delivery is known too; a
    delivery heard before its dispatch therefore waits for it, and both events then go out in
    one transaction, as they would have in order. A shipped order completes on its delivery."""
    delivered = shipment.delivered_at is not None
    if status is OrderStatus.CONFIRMED and shipment.dispatched_at is not None:
        return [OrderStatus.SHIPPED, OrderStatus.COMPLETED] if delivered else [OrderStatus.SHIPPED]
    if status is OrderStatus.SHIPPED and delivered:
        return [OrderStatus.COMPLETED]
    return []


def cancel_problem(status: OrderStatus, shipment: ShipmentStatus | None) -> str | None:
    """Why the order cannot be cancelled, or None: a shipped order only while its shipment has
    failed (the parcel is not on its way), a completed or cancelled one never."""
    if status is OrderStatus.SHIPPED and shipment is not ShipmentStatus.FAILED:
        return "A shipped order can be cancelled only while its shipment has failed."
    if OrderStatus.CANCELLED not in _ORDER_TRANSITIONS[status]:
        return str(IllegalTransitionError(status, OrderStatus.CANCELLED))
    return None
