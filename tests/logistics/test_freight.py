"""The quoter (services/logistics/freight.py) on the real Redis: a carrier's answer is cached
an hour (the second quote does not ask the port), a carrier that fails or times out gets the
default estimate (never cached), and after 5 failures within a minute its breaker is open: the
port is not asked at all until it closes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import date
from decimal import Decimal

import pybreaker
import pytest

from services.logistics import domain, freight
from services.logistics.domain import Parcel, Rate, ServiceType
from services.logistics.freight import CarrierRef, QuotePolicy, Quoter, SimulatedCarrier
from services.platform.core.settings import load_settings
from services.platform.persistence.redis import JsonCache, Keys, connect_redis

pytestmark = pytest.mark.integration

TODAY = date(2025, 1, 15)  # a Wednesday


class CountingPort:
    """The simulated carrier, counting the calls; `fail` makes it raise, `delay` makes it slow."""

    def __init__(self) -> None:
        self.calls = 0
        self.fail = False
        self.delay = 0.0
        self.simulated = SimulatedCarrier()

    async def rates(self, carrier: CarrierRef, parcel: Parcel) -> list[Rate]:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.fail:
            raise freight.CarrierUnavailableError("down")
        return await self.simulated.rates(carrier, parcel)


@pytest.fixture
async def cache(scoped_env: Callable[[str], Mapping[str, str]]) -> AsyncIterator[JsonCache]:
    settings = load_settings("logistics", 8004, scoped_env("logistics_freight"))
    redis = connect_redis(settings)
    # Keys of this test's own: a cached answer of another test never answers here.
    yield JsonCache(redis, Keys(f"{settings.redis_prefix}{uuid.uuid4().hex}:"))
    await redis.aclose()


def carrier(*kinds: ServiceType) -> CarrierRef:
    return CarrierRef(uuid.uuid4(), "SIMUL", "Simulada", kinds or (ServiceType.STANDARD,))


def parcel(destination: str = "20040-020") -> Parcel:
    return Parcel(Decimal("2.5"), Decimal(30), Decimal(20), Decimal(10), "01310-100", destination)


async def test_the_second_quote_is_served_from_redis(cache: JsonCache) -> None:
    port = CountingPort()
    quoter = Quoter(port, cache)
    ref = carrier(ServiceType.STANDARD, ServiceType.EXPRESS)
    first = await quoter.quotes([ref], parcel(), TODAY)
    second = await quoter.quotes([ref], parcel(), TODAY)
    assert port.calls == 1
    assert first == second
    assert [(q.rate.service_type, q.rate.price, q.delivery_date) for q in first] == [
        (ServiceType.STANDARD, Decimal("31.25"), date(2025, 1, 23)),
        (ServiceType.EXPRESS, Decimal("51.00"), date(2025, 1, 17)),
    ]
    await quoter.quotes([ref], parcel("30000-000"), TODAY)  # another parcel: asked again
    assert port.calls == 2


async def test_a_failure_or_a_timeout_is_the_default_estimate_and_not_cached(
    cache: JsonCache,
) -> None:
    port = CountingPort()
    quoter = Quoter(port, cache, QuotePolicy(timeout_seconds=0.05))
    ref = carrier()
    expected = domain.rate(ServiceType.STANDARD, Decimal("2.5"), domain.FARTHEST)
    for fail, delay in ((True, 0.0), (False, 1.0)):
        port.fail, port.delay = fail, delay
        [quote] = await quoter.quotes([ref], parcel(), TODAY)
        assert (quote.rate, quote.estimated) == (expected, True)
    port.fail, port.delay = False, 0.0
    [quote] = await quoter.quotes([ref], parcel(), TODAY)
    assert (quote.rate.price, quote.estimated) == (Decimal("31.25"), False)
    assert port.calls == 3


async def test_the_simulated_carrier_fails_for_its_documented_cep(cache: JsonCache) -> None:
    ref = carrier()
    with pytest.raises(freight.CarrierUnavailableError):
        await SimulatedCarrier().rates(ref, parcel(freight.FAILING_CEP))
    [quote] = await Quoter(SimulatedCarrier(), cache).quotes(
        [ref], parcel(freight.FAILING_CEP), TODAY
    )
    assert quote.estimated


async def test_five_failures_open_the_breaker_and_the_port_is_not_asked(
    cache: JsonCache,
) -> None:
    port = CountingPort()
    port.fail = True
    quoter = Quoter(port, cache, QuotePolicy(breaker_failures=5, breaker_open_seconds=0.5))
    ref, other = carrier(), CarrierRef(uuid.uuid4(), "OTHER", "Outra", (ServiceType.STANDARD,))
    for _ in range(5):
        await quoter.quotes([ref], parcel(), TODAY)
    assert port.calls == 5
    assert quoter.breaker(ref.code).current_state == pybreaker.STATE_OPEN
    port.fail = False
    [quote] = await quoter.quotes([ref], parcel(), TODAY)
    assert (quote.estimated, port.calls) == (True, 5)  # failed fast: not asked
    [quote] = await quoter.quotes([other], parcel(), TODAY)  # another carrier's breaker
    assert (quote.estimated, port.calls) == (False, 6)
    await asyncio.sleep(0.6)  # open for 0.5 s; then one trial call, which succeeds
    [quote] = await quoter.quotes([ref], parcel(), TODAY)
    assert (quote.estimated, port.calls) == (False, 7)
    assert quoter.breaker(ref.code).current_state == pybreaker.STATE_CLOSED
