"""The logistics rules, pure (services/logistics/domain.py): chargeable weight, CEP distance,
the simulated carrier's prices and transit times, the default estimate, business days."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from services.logistics import domain
from services.logistics.domain import Parcel, Rate, ServiceType


def parcel(
    weight: str = "2.5",
    dims: tuple[str, str, str] = ("30", "20", "10"),
    origin: str = "01310-100",
    destination: str = "20040-020",
) -> Parcel:
    length, width, height = (Decimal(d) for d in dims)
    return Parcel(Decimal(weight), length, width, height, origin, destination)


@pytest.mark.parametrize(
    ("weight", "dims", "chargeable"),
    [
        ("2.5", ("30", "20", "10"), Decimal("2.5")),  # volumetric 1 kg: the weight counts
        ("1", ("60", "50", "40"), Decimal(20)),  # volumetric 20 kg: the volume counts
        ("20", ("60", "50", "40"), Decimal(20)),  # equal
        ("0.1", ("1", "1", "1"), Decimal("0.1")),
    ],
)
def test_the_chargeable_weight_is_the_greater_of_weight_and_volume(
    weight: str, dims: tuple[str, str, str], chargeable: Decimal
) -> None:
    assert parcel(weight, dims).chargeable_kg == chargeable


@pytest.mark.parametrize(
    ("origin", "destination", "distance"),
    [
        ("01310-100", "01310-200", 0),
        ("01310-100", "20040-020", 2),
        ("20040-020", "01310-100", 2),
        ("01310-100", "90010-000", 9),
        ("69000-000", "30000-000", 3),
    ],
)
def test_the_distance_is_how_far_apart_the_first_digits_are(
    origin: str, destination: str, distance: int
) -> None:
    assert domain.cep_distance(origin, destination) == distance


@pytest.mark.parametrize(
    ("kind", "chargeable", "distance", "price", "days"),
    [
        # base + per kg * chargeable + per step * distance; days + per step * distance (rounded)
        (ServiceType.STANDARD, Decimal("2.5"), 2, Decimal("31.25"), 6),
        (ServiceType.EXPRESS, Decimal("2.5"), 2, Decimal("51.00"), 2),
        (ServiceType.ECONOMY, Decimal("2.5"), 2, Decimal("21.75"), 9),
        (ServiceType.STANDARD, Decimal(0), 0, Decimal("15.00"), 4),
        (ServiceType.EXPRESS, Decimal(1), 1, Decimal("37.00"), 2),  # 0.5 day rounds up
        (ServiceType.EXPRESS, Decimal(1), 9, Decimal("101.00"), 6),
        (ServiceType.ECONOMY, Decimal("0.333"), 0, Decimal("12.50"), 7),  # 12.4995 → 12.50
        (ServiceType.STANDARD, Decimal(1000), 9, Decimal("2560.00"), 13),
    ],
)
def test_a_service_types_price_and_days(
    kind: ServiceType, chargeable: Decimal, distance: int, price: Decimal, days: int
) -> None:
    assert domain.rate(kind, chargeable, distance) == Rate(kind, price, days)


def test_express_is_dearer_and_faster_than_standard_than_economy() -> None:
    found = {r.service_type: r for r in domain.rates(parcel(), list(ServiceType))}
    economy, standard, express = (found[ServiceType(k)] for k in ("economy", "standard", "express"))
    assert economy.price < standard.price < express.price
    assert economy.business_days > standard.business_days > express.business_days


def test_the_default_estimate_is_the_farthest_distances_rate() -> None:
    near = parcel(origin="01310-100", destination="01310-200")
    assert domain.default_estimate(near, [ServiceType.STANDARD]) == [
        domain.rate(ServiceType.STANDARD, Decimal("2.5"), domain.FARTHEST)
    ]
    assert domain.default_estimate(near, [ServiceType.STANDARD])[0].price > (
        domain.rates(near, [ServiceType.STANDARD])[0].price
    )


@pytest.mark.parametrize(
    ("start", "days", "expected"),
    [
        (date(2025, 1, 15), 0, date(2025, 1, 15)),  # a Wednesday
        (date(2025, 1, 15), 1, date(2025, 1, 16)),
        (date(2025, 1, 15), 3, date(2025, 1, 20)),  # over the weekend
        (date(2025, 1, 15), 6, date(2025, 1, 23)),
        (date(2025, 1, 17), 1, date(2025, 1, 20)),  # Friday → Monday
        (date(2025, 1, 18), 1, date(2025, 1, 20)),  # Saturday → Monday
        (date(2025, 1, 19), 5, date(2025, 1, 24)),  # Sunday → Friday
    ],
)
def test_business_days_skip_weekends(start: date, days: int, expected: date) -> None:
    assert domain.add_business_days(start, days) == expected
