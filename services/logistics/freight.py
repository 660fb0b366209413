"""The carrier port and its default adapter, and how a quote asks carriers (ADR 0019).

    answer = await freight.quote_freight(ctx, body)  # models.QuoteList

`CarrierPort` is what a carrier integration implements: the rates of the service types asked
for a parcel, or an exception when it cannot answer. `SimulatedCarrier`, the default, prices by
`domain.rates` and fails (`CarrierUnavailableError`) for the destination CEP `99999-999`.

`Quoter` asks the port per carrier: the answer of the last hour from Redis (`ctx.cache`, keyed
by the carrier, its service types and the parcel), else the port under a timeout and the
carrier's circuit breaker (`windowed_breaker`: 5 failures within 60 s open it for 60 s). A
failure, a timeout or an open breaker gives the carrier's default estimate
(`domain.default_estimate`, marked estimated), never cached. One `Quoter` per running service,
built at start-up into `ctx.state`, so the breakers count every request the process serves.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Final, Protocol
from uuid import UUID

import pybreaker

from generated.logistics import models
from services.logistics import domain, queries
from services.platform import JsonCache, ServiceContext, utc_now, windowed_breaker

log = logging.getLogger(__name__)

QUOTER: Final = "logistics.quoter"  # the ctx.state entry
CACHE_TTL_SECONDS: Final = 3600.0
FAILING_CEP: Final = "99999-999"  # the simulator's documented failure


class CarrierUnavailableError(Exception):
    """The carrier did not answer (the simulator's failing CEP, a real carrier's outage)."""


@dataclass(frozen=True)
class CarrierRef:
    """The carrier a port is asked for."""

    id: UUID
    code: str
    name: str
    service_types: tuple[domain.ServiceType, ...]


@dataclass(frozen=True)
class Quote:
    carrier: CarrierRef
    rate: domain.Rate
    delivery_date: date
    estimated: bool


class CarrierPort(Protocol):
    async def rates(self, carrier: CarrierRef, parcel: domain.Parcel) -> list[domain.Rate]:
        """One rate per service type of `carrier`; raises when the carrier cannot answer."""
        ...


class SimulatedCarrier:
    """The default adapter: deterministic prices (`domain.rates`); fails for `FAILING_CEP`."""

    async def rates(self, carrier: CarrierRef, parcel: domain.Parcel) -> list[domain.Rate]:
        if parcel.destination_cep == FAILING_CEP:
            raise CarrierUnavailableError(f"{carrier.code} does not deliver to {FAILING_CEP}")
        return domain.rates(parcel, list(carrier.service_types))


@dataclass(frozen=True)
class QuotePolicy:
    timeout_seconds: float = 2.0
    breaker_failures: int = 5
    breaker_window_seconds: float = 60.0
    breaker_open_seconds: float = 60.0


class Quoter:
    """Asks carriers through a port, cached, timed out and behind a breaker per carrier."""

    def __init__(
        self, port: CarrierPort, cache: JsonCache, policy: QuotePolicy | None = None
    ) -> None:
        self.port = port
        self.cache = cache
        self.policy = policy or QuotePolicy()
        self._breakers: dict[str, pybreaker.CircuitBreaker] = {}

    def breaker(self, code: str) -> pybreaker.CircuitBreaker:
        if code not in self._breakers:
            self._breakers[code] = windowed_breaker(
                f"carrier-{code}",
                failures=self.policy.breaker_failures,
                window_seconds=self.policy.breaker_window_seconds,
                open_seconds=self.policy.breaker_open_seconds,
            )
        return self._breakers[code]

    async def quotes(
        self, carriers: list[CarrierRef], parcel: domain.Parcel, today: date
    ) -> list[Quote]:
        """Every carrier's quotes, cheapest first (then by code and service type)."""
        answers = await asyncio.gather(*(self._carrier(carrier, parcel) for carrier in carriers))
        quotes = [
            Quote(carrier, rate, domain.add_business_days(today, rate.business_days), estimated)
            for carrier, (rates, estimated) in zip(carriers, answers, strict=True)
            for rate in rates
        ]
        return sorted(
            quotes, key=lambda q: (q.rate.price, q.carrier.code, q.rate.service_type.value)
        )

    async def _carrier(
        self, carrier: CarrierRef, parcel: domain.Parcel
    ) -> tuple[list[domain.Rate], bool]:
        key = self._key(carrier, parcel)
        cached = await self.cache.get(key)
        if cached is not None:
            return [_rate(entry) for entry in cached], False
        try:
            with self.breaker(carrier.code).calling():
                async with asyncio.timeout(self.policy.timeout_seconds):
                    rates = await self.port.rates(carrier, parcel)
        except (pybreaker.CircuitBreakerError, TimeoutError, CarrierUnavailableError) as error:
            log.warning("carrier %s gave no quote (%s); default estimate", carrier.code, error)
            return domain.default_estimate(parcel, list(carrier.service_types)), True
        await self.cache.set(key, [_entry(rate) for rate in rates], CACHE_TTL_SECONDS)
        return rates, False

    def _key(self, carrier: CarrierRef, parcel: domain.Parcel) -> str:
        asked = {
            "carrier": str(carrier.id),
            "service_types": [kind.value for kind in carrier.service_types],
            "parcel": [
                str(parcel.weight_kg),
                str(parcel.length_cm),
                str(parcel.width_cm),
                str(parcel.height_cm),
                parcel.origin_cep,
                parcel.destination_cep,
            ],
        }
        digest = hashlib.sha256(json.dumps(asked, sort_keys=True).encode()).hexdigest()
        return self.cache.key("freight-quote", digest)


def _entry(rate: domain.Rate) -> dict[str, str | int]:
    return {
        "service_type": rate.service_type.value,
        "price": str(rate.price),
        "business_days": rate.business_days,
    }


def _rate(entry: dict[str, str | int]) -> domain.Rate:
    return domain.Rate(
        domain.ServiceType(str(entry["service_type"])),
        Decimal(str(entry["price"])),
        int(entry["business_days"]),
    )


async def start_quoter(ctx: ServiceContext) -> None:
    """Start-up hook: the process's one quoter (and its breakers), on the simulated carrier."""
    ctx.state[QUOTER] = Quoter(SimulatedCarrier(), ctx.cache)


def quoter(ctx: ServiceContext) -> Quoter:
    found: Quoter = ctx.state[QUOTER]
    return found


def _parcel(body: models.QuoteRequest) -> domain.Parcel:
    # Through str: the float the JSON number became, as it was written (2.5, not 2.49999...).
    return domain.Parcel(
        weight_kg=Decimal(str(body.weight_kg)),
        length_cm=Decimal(str(body.dimensions.length_cm)),
        width_cm=Decimal(str(body.dimensions.width_cm)),
        height_cm=Decimal(str(body.dimensions.height_cm)),
        origin_cep=body.origin_cep,
        destination_cep=body.destination_cep,
    )


async def quote_freight(ctx: ServiceContext, body: models.QuoteRequest) -> models.QuoteList:
    """The quotes of every active carrier for the parcel, cheapest first."""
    carriers = [
        CarrierRef(
            row.id,
            row.code,
            row.name,
            tuple(domain.ServiceType(kind) for kind in row.service_types),
        )
        for row in await queries.active_carriers(ctx)
    ]
    found = await quoter(ctx).quotes(carriers, _parcel(body), utc_now().date())
    return models.QuoteList(
        data=[
            models.Quote(
                carrier_id=quote.carrier.id,
                carrier_code=quote.carrier.code,
                carrier_name=quote.carrier.name,
                service_type=models.ServiceType(quote.rate.service_type.value),
                price=str(quote.rate.price),
                currency="BRL",
                business_days=quote.rate.business_days,
                estimated_delivery_date=quote.delivery_date,
                estimated=quote.estimated,
            )
            for quote in found
        ]
    )
