"""The logistics rules, pure: carriers' service types, the parcel's chargeable weight, the
distance between two CEPs, the simulated carrier's price and transit time, the default
estimate, business-day arithmetic (ADR 0019), and the shipments' status machine, estimated
delivery and tracking codes (ADR 0020). Table-tested in tests/logistics/test_domain.py.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Final

CENT: Final = Decimal("0.01")
VOLUMETRIC_DIVISOR: Final = Decimal(6000)  # cm³ per kg, the carriers' usual factor
FARTHEST: Final = 9  # the greatest distance two CEPs' first digits can have


class ServiceType(StrEnum):
    STANDARD = "standard"
    EXPRESS = "express"
    ECONOMY = "economy"


@dataclass(frozen=True)
class Tariff:
    """A service type's price (base + per chargeable kg + per step of distance, in BRL) and
    transit time (business days + per step of distance)."""

    base: Decimal
    per_kg: Decimal
    per_step: Decimal
    days: int
    days_per_step: Decimal


TARIFFS: Final[dict[ServiceType, Tariff]] = {
    ServiceType.ECONOMY: Tariff(Decimal("12.00"), Decimal("1.50"), Decimal("3.00"), 7, Decimal(1)),
    ServiceType.STANDARD: Tariff(Decimal("15.00"), Decimal("2.50"), Decimal("5.00"), 4, Decimal(1)),
    ServiceType.EXPRESS: Tariff(
        Decimal("25.00"), Decimal("4.00"), Decimal("8.00"), 1, Decimal("0.5")
    ),
}


@dataclass(frozen=True)
class Parcel:
    """What is quoted: weight (kg), dimensions (cm) and the two CEPs (`NNNNN-NNN`)."""

    weight_kg: Decimal
    length_cm: Decimal
    width_cm: Decimal
    height_cm: Decimal
    origin_cep: str
    destination_cep: str

    @property
    def volumetric_kg(self) -> Decimal:
        return self.length_cm * self.width_cm * self.height_cm / VOLUMETRIC_DIVISOR

    @property
    def chargeable_kg(self) -> Decimal:
        """The greater of the weight and the volumetric weight."""
        return max(self.weight_kg, self.volumetric_kg)

    @property
    def distance(self) -> int:
        return cep_distance(self.origin_cep, self.destination_cep)


@dataclass(frozen=True)
class Rate:
    """A carrier's answer for one service type: the price and the business days to deliver."""

    service_type: ServiceType
    price: Decimal
    business_days: int


def cep_distance(origin: str, destination: str) -> int:
    """0 to 9: how far apart the CEPs' first digits (Brazil's postal regions) are."""
    return abs(int(origin[0]) - int(destination[0]))


def rate(service_type: ServiceType, chargeable_kg: Decimal, distance: int) -> Rate:
    """The simulated carrier's price and transit time of one service type."""
    tariff = TARIFFS[service_type]
    price = tariff.base + tariff.per_kg * chargeable_kg + tariff.per_step * distance
    days = tariff.days + int((tariff.days_per_step * distance).to_integral_value(ROUND_HALF_UP))
    return Rate(service_type, price.quantize(CENT, ROUND_HALF_UP), days)


def rates(parcel: Parcel, service_types: list[ServiceType]) -> list[Rate]:
    return [rate(kind, parcel.chargeable_kg, parcel.distance) for kind in service_types]


def default_estimate(parcel: Parcel, service_types: list[ServiceType]) -> list[Rate]:
    """What is quoted when a carrier cannot answer: its tariffs at the farthest distance, so
    the estimate never promises less than a carrier would."""
    return [rate(kind, parcel.chargeable_kg, FARTHEST) for kind in service_types]


def add_business_days(start: date, days: int) -> date:
    """`start` plus `days` business days (Monday to Friday; holidays are not known)."""
    current = start
    left = days
    while left > 0:
        current += timedelta(days=1)
        if current.weekday() < 5:
            left -= 1
    return current


# --- shipments (ADR 0020) -------------------------------------------------------------------


class ShipmentStatus(StrEnum):
    PENDING = "pending"
    PREPARING = "preparing"
    DISPATCHED = "dispatched"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL: Final = frozenset(
    {ShipmentStatus.DELIVERED, ShipmentStatus.FAILED, ShipmentStatus.CANCELLED}
)
# With the carrier: an order cancelled now is a return, not a cancellation (ADR 0020).
ON_THE_WAY: Final = frozenset(
    {ShipmentStatus.DISPATCHED, ShipmentStatus.IN_TRANSIT, ShipmentStatus.OUT_FOR_DELIVERY}
)

_SHIPMENT_MOVES: Final[dict[ShipmentStatus, frozenset[ShipmentStatus]]] = {
    ShipmentStatus.PENDING: frozenset({ShipmentStatus.PREPARING, ShipmentStatus.CANCELLED}),
    ShipmentStatus.PREPARING: frozenset({ShipmentStatus.DISPATCHED, ShipmentStatus.CANCELLED}),
    # Straight to the courier: a parcel for the warehouse's own city has no line haul.
    ShipmentStatus.DISPATCHED: frozenset(
        {ShipmentStatus.IN_TRANSIT, ShipmentStatus.OUT_FOR_DELIVERY}
    ),
    ShipmentStatus.IN_TRANSIT: frozenset({ShipmentStatus.OUT_FOR_DELIVERY}),
    ShipmentStatus.OUT_FOR_DELIVERY: frozenset({ShipmentStatus.DELIVERED}),
    ShipmentStatus.DELIVERED: frozenset(),
    ShipmentStatus.FAILED: frozenset(),
    ShipmentStatus.CANCELLED: frozenset(),
}


class IllegalShipmentMoveError(Exception):
    def __init__(self, current: ShipmentStatus, target: ShipmentStatus) -> None:
        super().__init__(f"A shipment that is {current} cannot become {target}.")
        self.current = current
        self.target = target


def shipment_move(current: ShipmentStatus, target: ShipmentStatus) -> ShipmentStatus:
    """The new status, or IllegalShipmentMoveError when the machine has no such edge: `failed`
    from any state that is not final, the others as `_SHIPMENT_MOVES` lists them."""
    allowed = _SHIPMENT_MOVES[current]
    if target is ShipmentStatus.FAILED and current not in FINAL:
        return target
    if target not in allowed:
        raise IllegalShipmentMoveError(current, target)
    return target


def transit_days(service_type: ServiceType, origin_zip: str, destination_zip: str) -> int:
    """The business days the simulated carrier's tariff gives for the two CEPs (the weight
    changes the price, never the time)."""
    return rate(service_type, Decimal(0), cep_distance(origin_zip, destination_zip)).business_days


def estimated_delivery(
    dispatched_on: date, service_type: ServiceType, origin_zip: str, destination_zip: str
) -> date:
    return add_business_days(dispatched_on, transit_days(service_type, origin_zip, destination_zip))


TRACKING_CODE: Final = re.compile(r"^[A-Z0-9]{8,40}$")
# No 0/O or 1/I: a code read aloud or copied by hand stays right. 13 of 32 symbols: 65 bits.
TRACKING_ALPHABET: Final = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
TRACKING_LENGTH: Final = 13


def new_tracking_code() -> str:
    """An unguessable code (secrets): public tracking needs no login, so guessing must not pay."""
    return "".join(secrets.choice(TRACKING_ALPHABET) for _ in range(TRACKING_LENGTH))
