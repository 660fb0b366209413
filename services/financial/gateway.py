"""The payment-gateway port, its default adapter (a deterministic simulator) and the retry and
timeout policy every adapter runs under (ADR 0012).

The port takes an idempotency key with every call (the order id for a charge): a gateway asked
twice with the same key charges once and gives the first answer again, so a redelivered event
or a retry after a timeout never charges twice.

The simulator's documented test values — the cents of the amount decide:

| cents | answer |
| --- | --- |
| `.51` | declined, `card_declined` |
| `.52` | declined, `insufficient_funds` |
| `.96` | approved after 2 seconds (the payment shows `processing` meanwhile) |
| `.97` | the first attempt times out, the retry approves |
| `.98` | every attempt times out: the payment is declined, `gateway_unavailable` |
| anything else | approved |

Refunds of an approved charge always succeed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, Protocol, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from services.financial.domain import DeclineReason

log = logging.getLogger("services.financial.gateway")

T = TypeVar("T")


class GatewayTimeoutError(Exception):
    """The gateway did not answer in time (the charge may or may not have happened: retry with
    the same idempotency key to find out)."""


class GatewayUnavailableError(Exception):
    """The gateway did not answer, however often it was asked."""


@dataclass(frozen=True, slots=True)
class Charge:
    idempotency_key: str
    amount: Decimal
    currency: str
    method: str


@dataclass(frozen=True, slots=True)
class ChargeResult:
    approved: bool
    reference: str
    decline_reason: DeclineReason | None = None


@dataclass(frozen=True, slots=True)
class Refund:
    idempotency_key: str
    charge_reference: str
    amount: Decimal
    currency: str


class PaymentGateway(Protocol):
    async def charge(self, charge: Charge) -> ChargeResult: ...

    async def refund(self, refund: Refund) -> str:
        """The gateway's reference of the refund."""
        ...


DECLINED_CENTS: Final = {
    Decimal("0.51"): DeclineReason.CARD_DECLINED,
    Decimal("0.52"): DeclineReason.INSUFFICIENT_FUNDS,
}
SLOW_CENTS: Final = Decimal("0.96")
SLOW_SECONDS: Final = 2.0  # well inside the retry policy's timeout of an attempt
TIMES_OUT_ONCE_CENTS: Final = Decimal("0.97")
TIMES_OUT_CENTS: Final = Decimal("0.98")


def _cents(amount: Decimal) -> Decimal:
    return amount - int(amount)


class SimulatedGateway:
    """The default adapter: answers from the amount (module docstring); remembers its answers by
    idempotency key, as a real gateway does, for as long as the process lives."""

    def __init__(self, slow_seconds: float = SLOW_SECONDS) -> None:
        self.slow_seconds = slow_seconds
        self._charges: dict[str, ChargeResult] = {}
        self._timed_out: set[str] = set()
        self.charge_calls = 0  # attempts seen, for tests of the retry policy

    async def charge(self, charge: Charge) -> ChargeResult:
        self.charge_calls += 1
        if charge.idempotency_key in self._charges:
            return self._charges[charge.idempotency_key]
        cents = _cents(charge.amount)
        if cents == TIMES_OUT_CENTS:
            raise GatewayTimeoutError(f"simulated timeout (amount ending in {cents})")
        if cents == TIMES_OUT_ONCE_CENTS and charge.idempotency_key not in self._timed_out:
            self._timed_out.add(charge.idempotency_key)
            raise GatewayTimeoutError(f"simulated first-attempt timeout (amount ending in {cents})")
        if cents == SLOW_CENTS:
            await asyncio.sleep(self.slow_seconds)
        reference = f"SIM-{charge.idempotency_key.replace('-', '')[:16]}"
        reason = DECLINED_CENTS.get(cents)
        result = ChargeResult(approved=reason is None, reference=reference, decline_reason=reason)
        self._charges[charge.idempotency_key] = result
        return result

    async def refund(self, refund: Refund) -> str:
        return f"SIMR-{refund.idempotency_key.replace('-', '')[:16]}"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 3
    attempt_timeout_seconds: float = 5.0
    first_wait_seconds: float = 0.2
    max_wait_seconds: float = 1.0


class ResilientGateway:
    """Any adapter under a timeout per attempt and retries with exponential back-off (tenacity):
    a timeout is retried with the same idempotency key; when every attempt timed out,
    `GatewayUnavailableError`. A declined answer is an answer, never retried."""

    def __init__(self, inner: PaymentGateway, policy: RetryPolicy | None = None) -> None:
        self.inner = inner
        self.policy = policy or RetryPolicy()

    def _retrying(self) -> AsyncRetrying:
        policy = self.policy
        return AsyncRetrying(
            stop=stop_after_attempt(policy.attempts),
            wait=wait_exponential(
                multiplier=policy.first_wait_seconds, max=policy.max_wait_seconds
            ),
            retry=retry_if_exception_type(GatewayTimeoutError),
            reraise=False,
        )

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call` under the policy; `RetryError` when every attempt timed out."""

        async def attempt() -> T:
            try:
                async with asyncio.timeout(self.policy.attempt_timeout_seconds):
                    return await call()
            except TimeoutError as error:
                raise GatewayTimeoutError("no answer in time") from error

        return await self._retrying()(attempt)

    async def charge(self, charge: Charge) -> ChargeResult:
        try:
            return await self._call(lambda: self.inner.charge(charge))
        except RetryError as error:
            log.warning("gateway did not answer a charge of %s", charge.idempotency_key)
            raise GatewayUnavailableError(charge.idempotency_key) from error

    async def refund(self, refund: Refund) -> str:
        try:
            return await self._call(lambda: self.inner.refund(refund))
        except RetryError as error:
            log.warning("gateway did not answer a refund of %s", refund.idempotency_key)
            raise GatewayUnavailableError(refund.idempotency_key) from error
