"""The payment-gateway port: the simulator's documented test values, its idempotency, and the
tenacity policy around any adapter (retries on timeouts only, a timeout per attempt)."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest

from services.financial.domain import DeclineReason
from services.financial.gateway import (
    Charge,
    ChargeResult,
    GatewayTimeoutError,
    GatewayUnavailableError,
    Refund,
    ResilientGateway,
    RetryPolicy,
    SimulatedGateway,
)

FAST = RetryPolicy(attempts=3, attempt_timeout_seconds=0.05, first_wait_seconds=0.001)


def charge(amount: str, key: str = "c7d8e9f0-1a2b-4c3d-8e4f-5a6b7c8d9e0f") -> Charge:
    return Charge(idempotency_key=key, amount=Decimal(amount), currency="BRL", method="pix")


@pytest.mark.parametrize(
    ("amount", "approved", "reason"),
    [
        ("724.80", True, None),
        ("10.00", True, None),
        ("724.51", False, DeclineReason.CARD_DECLINED),
        ("1.52", False, DeclineReason.INSUFFICIENT_FUNDS),
    ],
)
async def test_the_simulator_answers_from_the_cents(
    amount: str, approved: bool, reason: DeclineReason | None
) -> None:
    result = await SimulatedGateway().charge(charge(amount))
    assert (result.approved, result.decline_reason) == (approved, reason)
    assert result.reference == "SIM-c7d8e9f01a2b4c3d"


async def test_the_simulator_times_out_on_98_cents_every_time() -> None:
    gateway = SimulatedGateway()
    for _ in range(3):
        with pytest.raises(GatewayTimeoutError):
            await gateway.charge(charge("5.98"))


async def test_the_simulator_times_out_once_on_97_cents() -> None:
    gateway = SimulatedGateway()
    with pytest.raises(GatewayTimeoutError):
        await gateway.charge(charge("5.97"))
    assert (await gateway.charge(charge("5.97"))).approved


async def test_the_simulator_is_slow_on_96_cents_and_then_approves() -> None:
    gateway = SimulatedGateway(slow_seconds=0.2)
    started = time.monotonic()
    assert (await gateway.charge(charge("5.96"))).approved
    assert time.monotonic() - started >= 0.2


async def test_the_same_idempotency_key_gets_the_first_answer_again() -> None:
    gateway = SimulatedGateway()
    first = await gateway.charge(charge("724.51"))
    # Another amount under the same key: the gateway charged (declined) once and says so again.
    assert await gateway.charge(charge("724.80")) == first


async def test_a_timeout_is_retried_with_the_same_key_and_then_approved() -> None:
    simulator = SimulatedGateway()
    result = await ResilientGateway(simulator, FAST).charge(charge("5.97"))
    assert result.approved
    assert simulator.charge_calls == 2


async def test_a_gateway_that_never_answers_in_time_is_unavailable_after_the_attempts() -> None:
    simulator = SimulatedGateway()
    with pytest.raises(GatewayUnavailableError):
        await ResilientGateway(simulator, FAST).charge(charge("5.98"))
    assert simulator.charge_calls == FAST.attempts


async def test_a_decline_is_an_answer_and_never_retried() -> None:
    simulator = SimulatedGateway()
    result = await ResilientGateway(simulator, FAST).charge(charge("5.51"))
    assert not result.approved
    assert simulator.charge_calls == 1


class HangingGateway:
    """An adapter whose calls never return: only the timeout per attempt ends them."""

    def __init__(self) -> None:
        self.calls = 0

    async def charge(self, charge: Charge) -> ChargeResult:
        self.calls += 1
        await asyncio.Event().wait()
        raise AssertionError("never answers")

    async def refund(self, refund: Refund) -> str:
        self.calls += 1
        await asyncio.Event().wait()
        raise AssertionError("never answers")


async def test_each_attempt_is_cut_off_by_its_timeout() -> None:
    hanging = HangingGateway()
    gateway = ResilientGateway(hanging, FAST)
    with pytest.raises(GatewayUnavailableError):
        await asyncio.wait_for(gateway.charge(charge("1.00")), timeout=5)
    refund = Refund("refund-1", "SIM-1", Decimal("1.00"), "BRL")
    with pytest.raises(GatewayUnavailableError):
        await asyncio.wait_for(gateway.refund(refund), timeout=5)
    assert hanging.calls == 2 * FAST.attempts
