"""The shipments' pure rules (ADR 0020): every edge of the status machine, the estimated
delivery, and tracking codes."""

from __future__ import annotations

from datetime import date
from itertools import product

import pytest

from services.logistics import domain
from services.logistics.domain import ServiceType, ShipmentStatus

S = ShipmentStatus
ALLOWED = {
    (S.PENDING, S.PREPARING),
    (S.PENDING, S.CANCELLED),
    (S.PENDING, S.FAILED),
    (S.PREPARING, S.DISPATCHED),
    (S.PREPARING, S.CANCELLED),
    (S.PREPARING, S.FAILED),
    (S.DISPATCHED, S.IN_TRANSIT),
    (S.DISPATCHED, S.OUT_FOR_DELIVERY),  # a local delivery: no line haul
    (S.DISPATCHED, S.FAILED),
    (S.IN_TRANSIT, S.OUT_FOR_DELIVERY),
    (S.IN_TRANSIT, S.FAILED),
    (S.OUT_FOR_DELIVERY, S.DELIVERED),
    (S.OUT_FOR_DELIVERY, S.FAILED),
}


@pytest.mark.parametrize(("current", "target"), list(product(S, S)))
def test_the_status_machine_has_exactly_its_edges(current: S, target: S) -> None:
    if (current, target) in ALLOWED:
        assert domain.shipment_move(current, target) is target
    else:
        with pytest.raises(domain.IllegalShipmentMoveError) as refused:
            domain.shipment_move(current, target)
        assert str(refused.value) == f"A shipment that is {current} cannot become {target}."


def test_final_states_go_nowhere() -> None:
    assert {S.DELIVERED, S.FAILED, S.CANCELLED} == domain.FINAL
    assert not [edge for edge in ALLOWED if edge[0] in domain.FINAL]


@pytest.mark.parametrize(
    ("dispatched_on", "service", "origin", "destination", "expected"),
    [
        # Campinas (1) to Curitiba (8): distance 7. standard 4 + 7 = 11 business days.
        (date(2026, 1, 5), ServiceType.STANDARD, "13069-000", "80010-000", date(2026, 1, 20)),
        # express 1 + round(0.5 * 7) = 5 business days (Monday → Monday).
        (date(2026, 1, 5), ServiceType.EXPRESS, "13069-000", "80010-000", date(2026, 1, 12)),
        # Same region: express 1 day; a Friday dispatch arrives on Monday.
        (date(2026, 1, 9), ServiceType.EXPRESS, "13069-000", "13010000", date(2026, 1, 12)),
        # São Paulo (0) to Rio (2): economy 7 + 2 = 9 business days.
        (date(2026, 1, 5), ServiceType.ECONOMY, "01310-100", "20011-000", date(2026, 1, 16)),
    ],
)
def test_the_estimated_delivery_counts_the_carriers_business_days(
    dispatched_on: date, service: ServiceType, origin: str, destination: str, expected: date
) -> None:
    assert domain.estimated_delivery(dispatched_on, service, origin, destination) == expected


def test_generated_tracking_codes_are_long_unambiguous_and_distinct() -> None:
    codes = {domain.new_tracking_code() for _ in range(2000)}
    assert len(codes) == 2000
    for code in codes:
        assert len(code) == domain.TRACKING_LENGTH
        assert domain.TRACKING_CODE.match(code)
        assert not set(code) & set("01OI")
