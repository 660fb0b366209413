"""The logistics rules, pure: carriers' service types, the parcel's chargeable weight, the
distance between two CEPs, the simulated carrier's price and transit time, the default
estimate, and business-day arithmetic (ADR 0019). Table-tested in tests/logistics/test_domain.py.
"""

from __future__ import annotations

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
