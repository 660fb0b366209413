"""The arithmetic and the placement loop of the saga bench (bench/saga.py), without servers."""

from __future__ import annotations

import asyncio
import json
import statistics
import uuid
from typing import Any

import httpx
import pytest

from bench.harness import BenchError
from bench.saga import (
    Outcome,
    Placement,
    Rate,
    failures,
    outcomes_of,
    percentile,
    place,
    shipments_of,
    summarize,
    table,
)
from tests.support.capture import WireMessage
from tests.support.events import envelope
from tests.support.orders import PricedItem, order_request


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [
        ([5.0], 0.5, 5.0),
        ([5.0], 0.99, 5.0),
        ([1.0, 2.0], 0.5, 1.5),
        ([3.0, 1.0, 2.0], 0.5, 2.0),
        ([1.0, 2.0, 3.0, 4.0], 0.0, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 1.0, 4.0),
        ([1.0, 2.0, 3.0, 4.0], 0.5, 2.5),
        ([float(n) for n in range(1, 101)], 0.99, 99.01),
    ],
)
def test_percentiles_interpolate_between_the_closest_ranks(
    values: list[float], fraction: float, expected: float
) -> None:
    assert percentile(values, fraction) == pytest.approx(expected)


def test_percentiles_agree_with_the_standard_library() -> None:
    values = [((n * 7919) % 1000) / 10 for n in range(1, 500)]
    quantiles = statistics.quantiles(values, n=100, method="inclusive")
    assert percentile(values, 0.5) == pytest.approx(quantiles[49])
    assert percentile(values, 0.99) == pytest.approx(quantiles[98])


def test_a_percentile_of_nothing_or_beyond_the_range_is_refused() -> None:
    with pytest.raises(BenchError):
        percentile([], 0.5)
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        percentile([1.0], 1.5)


def test_a_rate_counts_per_second_of_the_span_and_gives_milliseconds() -> None:
    rate = Rate.of([0.010, 0.020, 0.030, 0.040], span=2.0)
    assert (rate.count, rate.per_second) == (4, 2.0)
    assert rate.p50_ms == pytest.approx(25.0)
    assert rate.p99_ms == pytest.approx(39.7)
    with pytest.raises(BenchError, match="nothing was measured"):
        Rate.of([0.01], span=0)


def reached(*outcomes: Outcome) -> dict[str, Outcome]:
    return {outcome.status: outcome for outcome in outcomes}


def test_summarize_measures_placement_from_send_and_sagas_from_the_201() -> None:
    placements = [
        Placement("a", sent_at=10.0, answered_at=10.1),
        Placement("b", sent_at=10.0, answered_at=10.3),
        Placement("c", sent_at=10.2, answered_at=10.5),
        Placement("d", sent_at=10.4, answered_at=10.6),
    ]
    outcomes = {
        "a": reached(Outcome("confirmed", 10.6), Outcome("completed", 12.1)),
        "b": reached(Outcome("confirmed", 11.3)),  # confirmed, never completed
        "c": reached(Outcome("cancelled", 11.0, "payment declined")),
    }
    result = summarize(placements, outcomes)

    # Four orders from the first send (10.0) to the last 201 (10.6).
    assert result.placed.count == 4
    assert result.placed.per_second == pytest.approx(4 / 0.6)
    assert result.placed.p50_ms == pytest.approx(250.0)
    # Two sagas confirmed, 0.5 s and 1.0 s after their 201, the last at 11.3.
    assert result.confirmed is not None
    assert result.confirmed.count == 2
    assert result.confirmed.per_second == pytest.approx(2 / 1.3)
    assert result.confirmed.p50_ms == pytest.approx(750.0)
    assert result.confirmed.p99_ms == pytest.approx(995.0)
    # One saga completed, 2.0 s after its 201, at 12.1: 1 in 2.1 s from the first send.
    assert result.completed is not None
    assert result.completed.count == 1
    assert result.completed.p50_ms == pytest.approx(2000.0)
    assert result.completed.per_second == pytest.approx(1 / 2.1)
    assert result.cancelled == {"c": "payment declined"}
    assert result.unfinished == ["b", "d"]
    assert failures(result) == [
        "order c was cancelled: payment declined",
        "2 order(s) neither completed nor cancelled in time, e.g. b, d",
    ]


def test_a_run_where_every_saga_completed_has_no_failures_and_a_three_row_table() -> None:
    placements = [Placement("a", 0.0, 0.01), Placement("b", 0.0, 0.02)]
    result = summarize(
        placements,
        {
            "a": reached(Outcome("confirmed", 0.5), Outcome("completed", 1.5)),
            "b": reached(Outcome("confirmed", 1), Outcome("completed", 2)),
        },
    )
    assert failures(result) == []
    assert table(result, concurrency=2).splitlines() == [
        "| saga | count | per second | p50 | p99 |",
        "| --- | ---: | ---: | ---: | ---: |",
        "| placed: `POST /api/v1/orders` → 201, 2 at a time | 2 | 100.0 | 15.00ms | 19.90ms |",
        "| confirmed: 201 → `sales.order.confirmed` | 2 | 2.0 | 735.00ms | 975.10ms |",
        "| completed: 201 → `sales.order.completed` (4 courier calls included) | 2 | 1.0 |"
        " 1.73s | 1.98s |",
    ]


def test_a_run_without_any_confirmation_says_so() -> None:
    result = summarize([Placement("a", 0.0, 0.01)], {})
    assert result.confirmed is None
    text = table(result, concurrency=1)
    assert "| confirmed: 201 → `sales.order.confirmed` | 0 | - | - | - |" in text
    assert result.completed is None
    assert "0 cancelled, 1 unfinished of 1." in text
    with pytest.raises(BenchError, match="no order was placed"):
        summarize([], {})


def wire(routing_key: str, body: dict[str, Any] | bytes, at: float) -> WireMessage:
    return WireMessage(
        exchange="sales.events",
        routing_key=routing_key,
        body=body if isinstance(body, bytes) else json.dumps(body).encode(),
        delivery_mode=2,
        content_type="application/json",
        message_id=None,
        correlation_id=None,
        priority=None,
        expiration=None,
        headers={},
        arrived_at=at,
    )


def test_milestones_are_the_first_announcement_of_each_status_of_each_order() -> None:
    confirmed = envelope("sales.order.confirmed", {"order_id": "a"})
    completed = envelope("sales.order.completed", {"order_id": "a"})
    cancelled = envelope("sales.order.cancelled", {"order_id": "b", "reason": "out of stock"})
    messages = [
        wire("sales.order.confirmed", confirmed, 1.0),
        wire("sales.order.confirmed", confirmed, 2.0),  # a redelivery: the first one counts
        wire("sales.order.cancelled", cancelled, 3.0),
        wire("sales.order.created", envelope("sales.order.created", {"order_id": "c"}), 4.0),
        wire("sales.order.confirmed", b"not json", 5.0),
        wire("sales.order.confirmed", envelope("sales.order.confirmed", {"order_id": 7}), 6.0),
        wire("sales.order.completed", completed, 7.0),
    ]
    assert outcomes_of(messages) == {
        "a": {"confirmed": Outcome("confirmed", 1.0), "completed": Outcome("completed", 7.0)},
        "b": {"cancelled": Outcome("cancelled", 3.0, "out of stock")},
    }


def test_the_courier_walks_each_created_shipment_once() -> None:
    created = envelope("logistics.shipment.created", {"shipment_id": "s-1", "order_id": "a"})
    messages = [
        wire("logistics.shipment.created", created, 1.0),
        wire("logistics.shipment.created", created, 2.0),  # a redelivery
        wire("logistics.shipment.created", b"not json", 3.0),
        wire("logistics.shipment.dispatched", envelope("x", {"shipment_id": "s-2"}), 4.0),
        wire("logistics.shipment.created", envelope("x", {"shipment_id": "s-3"}), 5.0),
    ]
    assert shipments_of(messages) == ["s-1", "s-3"]


async def test_orders_are_placed_with_a_fresh_idempotency_key_each_and_bounded_concurrency() -> (
    None
):
    keys: list[str] = []
    in_flight = peak = 0

    async def answer(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        keys.append(request.headers["Idempotency-Key"])
        assert json.loads(request.content)["payment_method"] == "pix"
        return httpx.Response(201, json={"id": str(uuid.uuid4()), "status": "pending"})

    transport = httpx.MockTransport(answer)
    async with httpx.AsyncClient(transport=transport, base_url="http://sales") as client:
        placed = await place(client, 20, 4, lambda number: {"payment_method": "pix", "n": number})

    assert len(placed) == 20
    assert len(set(keys)) == 20
    assert len({placement.order_id for placement in placed}) == 20
    assert peak == 4
    assert all(placement.answered_at > placement.sent_at for placement in placed)


async def test_a_refused_order_stops_the_run_with_the_answer() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(404, text="no such path"))
    async with httpx.AsyncClient(transport=transport, base_url="http://sales") as client:
        with pytest.raises(BenchError, match="POST /api/v1/orders answered 404: no such path"):
            await place(client, 3, 2, lambda number: {})


def test_an_order_is_placed_for_the_customer_with_one_line_per_product() -> None:
    item = PricedItem("12.50")
    assert order_request("c-1", [(item, 2)]) == {
        "customer_id": "c-1",
        "items": [{"product_id": str(item.id), "quantity": 2}],
        "payment_method": "pix",
    }
