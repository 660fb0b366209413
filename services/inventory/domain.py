"""The inventory rules, pure: no I/O, no framework (DESIGN §5 inventory).

Commands (`commands/`) load rows, ask these functions what is allowed and what follows, and
write the result. Everything here is unit-tested without a database.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Final
from uuid import UUID

from services.platform import FieldError

SKU_PATTERN: Final = re.compile(r"^[A-Z0-9-]{3,100}$")
SLUG_PATTERN: Final = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
SLUG_MAX_LENGTH: Final = 120
WAREHOUSE_CODE_PATTERN: Final = re.compile(r"^[A-Z0-9-]{2,20}$")
PRICE_PATTERN: Final = re.compile(r"^\d{1,7}\.\d{2}$")
MIN_PRICE: Final = Decimal("0.01")
MAX_PRICE: Final = Decimal("9999999.99")
DEFAULT_CURRENCY: Final = "BRL"
DEFAULT_MIN_QUANTITY: Final = 10
REASON_MIN_LENGTH: Final = 5
REASON_MAX_LENGTH: Final = 255
RESERVATION_TTL: Final = timedelta(minutes=15)
DEFAULT_WAREHOUSE_CODE: Final = "DEFAULT"
DEFAULT_WAREHOUSE_NAME: Final = "Default warehouse"
# The largest quantity a stock row holds (the HTTP contract bounds every quantity by it).
MAX_QUANTITY: Final = 1_000_000_000


# --- catalogue ------------------------------------------------------------------------------


class ProductStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    DISCONTINUED = "discontinued"


def sku_errors(sku: str) -> list[FieldError]:
    if SKU_PATTERN.match(sku):
        return []
    return [FieldError("sku", "must be 3 to 100 characters of A-Z, 0-9 and '-'")]


def parse_price(text: str) -> Decimal | None:
    """The price as a Decimal, or None when it is not a price (format or range)."""
    if not PRICE_PATTERN.match(text):
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if MIN_PRICE <= value <= MAX_PRICE else None


def price_errors(text: str) -> list[FieldError]:
    if parse_price(text) is not None:
        return []
    return [FieldError("price", "must be a decimal string from 0.01 to 9999999.99")]


def format_price(value: Decimal) -> str:
    """The wire form: two decimals, no exponent ("12.50")."""
    return f"{value.quantize(Decimal('0.01')):f}"


def slugify(name: str) -> str:
    """A URL slug from a name: accents dropped, lower case, words joined by '-'."""
    ascii_text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:SLUG_MAX_LENGTH].rstrip("-")


def slug_errors(slug: str) -> list[FieldError]:
    if len(slug) <= SLUG_MAX_LENGTH and SLUG_PATTERN.match(slug):
        return []
    return [
        FieldError(
            "slug",
            f"must be 1 to {SLUG_MAX_LENGTH} lower-case letters, digits and single '-' "
            "(derived from the name when left out)",
        )
    ]


def creates_cycle(
    category_id: UUID, new_parent_id: UUID | None, parents: Mapping[UUID, UUID | None]
) -> bool:
    """True when making `new_parent_id` the parent of `category_id` closes a loop.

    `parents` maps every category to its parent. Walking up from the new parent reaching the
    category itself (or looping anyway, should the stored tree already be broken) is a cycle.
    """
    seen: set[UUID] = set()
    current = new_parent_id
    while current is not None:
        if current == category_id or current in seen:
            return True
        seen.add(current)
        current = parents.get(current)
    return False


def warehouse_code_errors(code: str) -> list[FieldError]:
    if WAREHOUSE_CODE_PATTERN.match(code):
        return []
    return [FieldError("code", "must be 2 to 20 characters of A-Z, 0-9 and '-'")]


# --- stock ----------------------------------------------------------------------------------


class MovementType(StrEnum):
    IN = "in"
    OUT = "out"
    ADJUSTMENT = "adjustment"
    RESERVATION = "reservation"
    RELEASE = "release"
    CONFIRMATION = "confirmation"


@dataclass(frozen=True, slots=True)
class StockLevel:
    on_hand: int
    reserved: int

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    def is_valid(self) -> bool:
        """The invariants the database enforces too (CHECK constraints on `stock`)."""
        return 0 <= self.reserved <= self.on_hand <= MAX_QUANTITY


def reason_errors(reason: str) -> list[FieldError]:
    if len(reason.strip()) >= REASON_MIN_LENGTH and len(reason) <= REASON_MAX_LENGTH:
        return []
    return [
        FieldError(
            "reason", f"must be {REASON_MIN_LENGTH} to {REASON_MAX_LENGTH} characters of text"
        )
    ]


def receive(level: StockLevel, quantity: int) -> StockLevel | FieldError:
    """Stock after a receipt of `quantity` (≥ 1) units, or why it cannot be taken in."""
    if quantity < 1:
        return FieldError("quantity", "must be at least 1")
    after = StockLevel(level.on_hand + quantity, level.reserved)
    if not after.is_valid():
        return FieldError("quantity", f"on hand would exceed {MAX_QUANTITY}")
    return after


def adjust(level: StockLevel, quantity: int) -> StockLevel | FieldError:
    """Stock after a signed adjustment, or why not: never below zero nor below what is
    reserved (reserved units belong to orders)."""
    if quantity == 0:
        return FieldError("quantity", "must not be 0")
    after = StockLevel(level.on_hand + quantity, level.reserved)
    if after.on_hand < 0:
        return FieldError(
            "quantity", f"on hand would go below zero ({level.on_hand} on hand, change {quantity})"
        )
    if after.on_hand < after.reserved:
        return FieldError(
            "quantity",
            f"on hand would go below the {level.reserved} reserved units "
            f"({level.on_hand} on hand, change {quantity})",
        )
    if not after.is_valid():
        return FieldError("quantity", f"on hand would exceed {MAX_QUANTITY}")
    return after


def is_low(available: int, min_quantity: int) -> bool:
    """Low stock: what can still be sold is at or below the minimum (seed rule)."""
    return available <= min_quantity


# --- reservations ---------------------------------------------------------------------------


class ReservationStatus(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    RELEASED = "released"


class ReleaseReason(StrEnum):
    CANCELLED = "cancelled"
    EXPIRED = "expired"


# pending → confirmed | released; both are final (DESIGN §5: state machines are the law).
_TRANSITIONS: Final[Mapping[ReservationStatus, frozenset[ReservationStatus]]] = {
    ReservationStatus.PENDING: frozenset({ReservationStatus.CONFIRMED, ReservationStatus.RELEASED}),
    ReservationStatus.CONFIRMED: frozenset(),
    ReservationStatus.RELEASED: frozenset(),
}


def can_transition(current: ReservationStatus, target: ReservationStatus) -> bool:
    return target in _TRANSITIONS[current]


class Decision(StrEnum):
    """What an order event does to the order's reservation."""

    APPLY = "apply"  # the legal transition: do it
    IGNORE = "ignore"  # already in the target state (a redelivery or a race): nothing to do
    REFUSE = "refuse"  # an illegal transition: dead-letter the event


def decide(current: ReservationStatus, target: ReservationStatus) -> Decision:
    if can_transition(current, target):
        return Decision.APPLY
    if current == target:
        return Decision.IGNORE
    return Decision.REFUSE


def expires_at(created_at: datetime) -> datetime:
    return created_at + RESERVATION_TTL


def is_expired(expiry: datetime, now: datetime) -> bool:
    return expiry <= now


@dataclass(frozen=True, slots=True)
class Line:
    product_id: UUID
    quantity: int


def merge_lines(lines: Iterable[Line]) -> list[Line]:
    """One line per product (an order may list a product twice), sorted by product id: every
    transaction then locks stock rows in the same order, so two reservations never deadlock."""
    totals: dict[UUID, int] = {}
    for line in lines:
        totals[line.product_id] = totals.get(line.product_id, 0) + line.quantity
    return [Line(product_id, totals[product_id]) for product_id in sorted(totals, key=str)]


@dataclass(frozen=True, slots=True)
class Shortage:
    product_id: UUID
    requested: int
    available: int


PRODUCT_NOT_FOUND: Final = "product_not_found"
INSUFFICIENT_STOCK: Final = "insufficient_stock"


def shortages(lines: Iterable[Line], available: Mapping[UUID, int]) -> list[Shortage]:
    """The lines that cannot be reserved, with requested and available quantities (an unknown
    product has 0 available), for the reservation_failed event.

    Another order may have released units between the failed attempt and this report; when
    nothing is short any more, every line is reported so the event still says what was asked.
    """
    report = [
        Shortage(line.product_id, line.quantity, max(0, available.get(line.product_id, 0)))
        for line in lines
    ]
    short = [item for item in report if item.requested > item.available]
    return short or report


def failure_reason(unknown: Iterable[UUID]) -> str:
    """The reservation_failed reason code: a product we do not sell wins over a shortage."""
    return PRODUCT_NOT_FOUND if any(True for _ in unknown) else INSUFFICIENT_STOCK


# --- HTTP concurrency -----------------------------------------------------------------------
