"""The saga half of `make bench` (tools/dev/bench.sh): orders placed per second through
`POST /api/v1/orders`, and sagas per second to `confirmed` and on to `completed`, with p50/p99
of each.

    python -m bench.saga [--orders N] [--concurrency C] [--products P] [--warmup W]
                         [--timeout SECONDS] [--output .bench/last.md] [--append] [--note TEXT]

Runs the six services as `erp serve` processes (the end-to-end tests'
`Platform`, tests/support/processes.py) on the real PostgreSQL, RabbitMQ and Redis, in
databases (`erpbench_<pid>_<service>_db`), a vhost and Redis keys of its own, all dropped at the
end. It makes a super-admin, P products with stock for every order and a customer with one
default address, places W unmeasured warm-up orders (they must all confirm: the saga works
before it is measured), then N orders, C at a time, one unit of one product each, paid by pix.

* Placement: the time from sending `POST /api/v1/orders` (a fresh Idempotency-Key each) to its
  201, per request; orders/s = N / (last 201 - first send).
* Saga: the time from an order's 201 to `sales.order.confirmed` about it arriving on a queue of
  the bench's own (bound to sales.order.confirmed, .completed and .cancelled before the first
  order: no polling, and the instant the event was routed, not the next poll); sagas/s =
  confirmed / (last confirmation - first send).
* Completed: the same to `sales.order.completed`. A simulated courier plays the warehouse and
  the carrier: as each `logistics.shipment.created` arrives it dispatches the shipment and moves
  it in transit, out for delivery and delivered over logistics' HTTP API (four calls, at most C
  shipments at a time), so the figure includes those calls and the invoice made on dispatch.

An async httpx client places the orders, not wrk: each placement's 201 must be matched to its
order's confirmation (by the id in the body), which wrk's Lua cannot time; the client's own cost
is in the placement figures, so they are an upper bound of the service's. Nothing is pinned:
six services, PostgreSQL and RabbitMQ share the machine's cores with the bench. The run fails
(after printing the table) when an order is cancelled, a courier call is refused or a saga does
not complete in time.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.harness import BenchError, latency
from services.platform.core.settings import service_variable
from services.registry import load_definition
from tests.support.accounts import Account, create_super_admin
from tests.support.capture import Capture, WireMessage
from tests.support.catalog import product_with_stock
from tests.support.customers import customer_with_address
from tests.support.orders import order_request
from tests.support.processes import PLATFORM, Platform, own_vhost
from tests.support.servers import AMQP_SERVER, POSTGRES_URL, REDIS_URL, delete_keys, drop_databases

ORDERS = "/api/v1/orders"
OUTCOMES = {
    "sales.order.confirmed": "confirmed",
    "sales.order.completed": "completed",
    "sales.order.cancelled": "cancelled",
}
SHIPMENT_CREATED = "logistics.shipment.created"
CARRIER = "BENCHPOST"
# The courier's calls, in order, on each shipment (logistics' API, ADR 0020).
COURIER_STEPS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("dispatch", {"carrier_code": CARRIER, "service_type": "standard"}),
    ("in-transit", {"location": "Campinas hub"}),
    ("out-for-delivery", {"location": "São Paulo"}),
    ("deliver", {"received_by": "Bench Customer"}),
)


# --- statistics (pure) ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Placement:
    order_id: str
    sent_at: float  # time.monotonic()
    answered_at: float


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # confirmed | completed | cancelled
    at: float  # time.monotonic() when the event arrived
    reason: str | None = None


def percentile(values: Sequence[float], fraction: float) -> float:
    """The `fraction` (0..1) quantile of `values`, interpolated linearly between the closest
    ranks (numpy's default, `statistics.quantiles(method="inclusive")`)."""
    if not values:
        raise BenchError("no values to take a percentile of")
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction {fraction} is not within 0..1")
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True, slots=True)
class Rate:
    """`count` things in `span` seconds, and the p50/p99 of their latencies (milliseconds)."""

    count: int
    per_second: float
    p50_ms: float
    p99_ms: float

    @classmethod
    def of(cls, latencies: Sequence[float], span: float) -> Rate:
        """From latencies and the span they took, both in seconds."""
        if span <= 0:
            raise BenchError(f"a span of {span} s: nothing was measured")
        return cls(
            count=len(latencies),
            per_second=len(latencies) / span,
            p50_ms=percentile(latencies, 0.5) * 1000,
            p99_ms=percentile(latencies, 0.99) * 1000,
        )


@dataclass(frozen=True, slots=True)
class SagaResult:
    placed: Rate
    confirmed: Rate | None  # None when no saga confirmed
    completed: Rate | None  # None when no saga completed
    cancelled: dict[str, str | None]  # order id → reason
    unfinished: list[str]  # order ids neither completed nor cancelled


Milestones = Mapping[str, Mapping[str, Outcome]]
"""Order id → status (confirmed, completed, cancelled) → when it was first announced."""


def summarize(placements: Sequence[Placement], milestones: Milestones) -> SagaResult:
    if not placements:
        raise BenchError("no order was placed")
    started = min(placement.sent_at for placement in placements)
    placed = Rate.of(
        [placement.answered_at - placement.sent_at for placement in placements],
        max(placement.answered_at for placement in placements) - started,
    )

    def reached(status: str) -> list[tuple[Placement, Outcome]]:
        return [
            (placement, outcome)
            for placement in placements
            if (outcome := milestones.get(placement.order_id, {}).get(status)) is not None
        ]

    def rate(status: str) -> Rate | None:
        done = reached(status)
        if not done:
            return None
        return Rate.of(
            [outcome.at - placement.answered_at for placement, outcome in done],
            max(outcome.at for _, outcome in done) - started,
        )

    cancelled = {placement.order_id: outcome.reason for placement, outcome in reached("cancelled")}
    finished = cancelled.keys() | {placement.order_id for placement, _ in reached("completed")}
    unfinished = [
        placement.order_id for placement in placements if placement.order_id not in finished
    ]
    return SagaResult(placed, rate("confirmed"), rate("completed"), cancelled, unfinished)


def table(result: SagaResult, *, concurrency: int) -> str:
    """The Markdown table of a run."""
    lines = [
        "| saga | count | per second | p50 | p99 |",
        "| --- | ---: | ---: | ---: | ---: |",
        _row(f"placed: `POST {ORDERS}` → 201, {concurrency} at a time", result.placed),
    ]
    for label, rate in (
        ("confirmed: 201 → `sales.order.confirmed`", result.confirmed),
        ("completed: 201 → `sales.order.completed` (4 courier calls included)", result.completed),
    ):
        lines.append(f"| {label} | 0 | - | - | - |" if rate is None else _row(label, rate))
    if result.cancelled or result.unfinished:
        lines.append(
            f"\n{len(result.cancelled)} cancelled, {len(result.unfinished)} unfinished "
            f"of {result.placed.count}."
        )
    return "\n".join(lines)


def _row(label: str, rate: Rate) -> str:
    return (
        f"| {label} | {rate.count} | {rate.per_second:.1f} | {latency(rate.p50_ms)}"
        f" | {latency(rate.p99_ms)} |"
    )


def failures(result: SagaResult) -> list[str]:
    """Why the run failed ([] when every saga completed)."""
    found = [
        f"order {order_id} was cancelled: {reason}"
        for order_id, reason in sorted(result.cancelled.items())
    ]
    if result.unfinished:
        found.append(
            f"{len(result.unfinished)} order(s) neither completed nor cancelled in time, e.g. "
            + ", ".join(result.unfinished[:5])
        )
    return found


def _payload(message: WireMessage) -> dict[str, Any] | None:
    envelope = message.envelope()
    payload = None if envelope is None else envelope.get("payload")
    return payload if isinstance(payload, dict) else None


def outcomes_of(messages: Iterable[WireMessage]) -> dict[str, dict[str, Outcome]]:
    """Each order's milestones among captured `sales.order.confirmed|completed|cancelled`:
    the first announcement of each."""
    found: dict[str, dict[str, Outcome]] = {}
    for message in messages:
        status = OUTCOMES.get(message.routing_key)
        payload = _payload(message)
        if status is None or payload is None or not isinstance(payload.get("order_id"), str):
            continue
        reason = payload.get("reason")
        found.setdefault(payload["order_id"], {}).setdefault(
            status, Outcome(status, message.arrived_at, reason if isinstance(reason, str) else None)
        )
    return found


def shipments_of(messages: Iterable[WireMessage]) -> list[str]:
    """The ids of the shipments `logistics.shipment.created` announced, first time each."""
    found: dict[str, None] = {}
    for message in messages:
        payload = _payload(message) if message.routing_key == SHIPMENT_CREATED else None
        if payload is not None and isinstance(payload.get("shipment_id"), str):
            found.setdefault(payload["shipment_id"])
    return list(found)


# --- the run --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    orders: int
    concurrency: int
    products: int
    warmup: int
    timeout: float


def bench_env(run: str, vhost: str) -> dict[str, str]:
    """ERP_* variables pointing every service at the run's databases, vhost and Redis keys."""
    server = POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1)
    env = {
        "ERP_EMBEDDED": "0",
        "ERP_AMQP_URL": f"{AMQP_SERVER}/{vhost}",
        "ERP_REDIS_URL": REDIS_URL,
        "ERP_REDIS_PREFIX": f"erpbench:{run}:",
        "ERP_LOG_LEVEL": "WARNING",
    }
    for service in PLATFORM:
        if load_definition(service).has_database:
            env[service_variable(service, "DATABASE_URL")] = f"{server}/erpbench_{run}_{service}_db"
    return env


async def place(
    client: httpx.AsyncClient, count: int, concurrency: int, body: Callable[[int], dict[str, Any]]
) -> list[Placement]:
    """Place `count` orders (`body(i)`), `concurrency` in flight at a time."""
    numbers = iter(range(count))
    placed: list[Placement] = []

    async def worker() -> None:
        for number in numbers:  # shared: each number is taken by one worker
            sent_at = time.monotonic()
            response = await client.post(
                ORDERS, json=body(number), headers={"Idempotency-Key": str(uuid.uuid4())}
            )
            answered_at = time.monotonic()
            if response.status_code != 201:
                raise BenchError(
                    f"POST {ORDERS} answered {response.status_code}: {response.text[:500]}"
                )
            placed.append(Placement(response.json()["id"], sent_at, answered_at))

    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    return placed


async def outcomes_for(
    capture: Capture, placements: Sequence[Placement], within: float
) -> dict[str, dict[str, Outcome]]:
    """Wait (at most `within` s) until every placed order completed or was cancelled."""
    wanted = {placement.order_id for placement in placements}
    found: dict[str, dict[str, Outcome]] = {}
    read = 0
    deadline = time.monotonic() + within
    while True:
        arrived = capture.messages[read:]
        read += len(arrived)
        for order_id, milestones in outcomes_of(arrived).items():
            for status, outcome in milestones.items():
                found.setdefault(order_id, {}).setdefault(status, outcome)
        ended = {
            order_id for order_id, seen in found.items() if seen.keys() & {"completed", "cancelled"}
        }
        if wanted <= ended or time.monotonic() > deadline:
            return {order_id: found[order_id] for order_id in wanted & found.keys()}
        await asyncio.sleep(0.02)


class Courier:
    """Walks every shipment logistics creates through `COURIER_STEPS` over HTTP, at most
    `concurrency` shipments at a time, while `run()` is running; `problems` holds every refusal."""

    def __init__(self, capture: Capture, logistics: httpx.AsyncClient, concurrency: int) -> None:
        self._capture = capture
        self._logistics = logistics
        self._slots = asyncio.Semaphore(concurrency)
        self._deliveries: set[asyncio.Task[None]] = set()
        self.problems: list[str] = []

    async def run(self) -> None:
        read = 0
        try:
            while True:
                arrived = self._capture.messages[read:]
                read += len(arrived)
                for shipment_id in shipments_of(arrived):
                    task = asyncio.create_task(self._deliver(shipment_id))
                    self._deliveries.add(task)
                    task.add_done_callback(self._deliveries.discard)
                await asyncio.sleep(0.02)
        finally:
            for task in list(self._deliveries):
                task.cancel()

    async def _deliver(self, shipment_id: str) -> None:
        async with self._slots:
            for step, body in COURIER_STEPS:
                path = f"/api/v1/shipments/{shipment_id}/{step}"
                response = await self._logistics.post(path, json=body)
                if response.status_code != 200:
                    self.problems.append(
                        f"POST {path} answered {response.status_code}: {response.text[:300]}"
                    )
                    return


async def measure(
    platform: Platform, amqp_url: str, admin: Account, options: Options
) -> SagaResult:
    bindings = [("sales.events", event) for event in OUTCOMES]
    bindings.append(("logistics.events", SHIPMENT_CREATED))
    capture = await Capture.start(amqp_url, bindings=bindings)
    try:
        token = admin.login(platform["auth"].url)
        headers = {"Authorization": f"Bearer {token}"}
        limits = httpx.Limits(max_connections=options.concurrency)
        async with (
            httpx.AsyncClient(base_url=platform["inventory"].url, headers=headers) as inventory,
            httpx.AsyncClient(
                base_url=platform["sales"].url, headers=headers, limits=limits, timeout=60
            ) as sales,
            httpx.AsyncClient(
                base_url=platform["logistics"].url, headers=headers, limits=limits, timeout=60
            ) as logistics,
        ):
            await carrier(logistics)
            courier = Courier(capture, logistics, options.concurrency)
            walking = asyncio.create_task(courier.run())
            stock = options.orders + options.warmup
            products = [
                await product_with_stock(inventory, stock, tag="SAGA")
                for _ in range(options.products)
            ]
            customer = await customer_with_address(sales, tag="SAGA")

            def body(number: int) -> dict[str, Any]:
                return order_request(customer.id, [(products[number % len(products)], 1)])

            try:
                print(f"== saga warm-up: {options.warmup} order(s)", flush=True)
                warm = await place(sales, options.warmup, options.concurrency, body)
                outcomes = await outcomes_for(capture, warm, options.timeout)
                refused = courier.problems + failures(summarize(warm, outcomes))
                if warm and refused:
                    raise BenchError("warm-up: " + "; ".join(refused))
                print(
                    f"== saga: {options.orders} order(s), {options.concurrency} at a time",
                    flush=True,
                )
                placements = await place(sales, options.orders, options.concurrency, body)
                outcomes = await outcomes_for(capture, placements, options.timeout)
            finally:
                walking.cancel()
            if courier.problems:
                raise BenchError("courier: " + "; ".join(courier.problems[:5]))
            result = summarize(placements, outcomes)
            # The API agrees with the wire (a sample: the first and the last order completed).
            completed = [p for p in placements if "completed" in outcomes.get(p.order_id, {})]
            for placement in completed[:1] + completed[-1:]:
                shown = await sales.get(f"{ORDERS}/{placement.order_id}")
                if shown.status_code != 200 or shown.json().get("status") != "completed":
                    raise BenchError(
                        f"GET {ORDERS}/{placement.order_id} answered {shown.status_code} "
                        f"{shown.text[:300]}; the wire says completed"
                    )
            return result
    finally:
        await capture.stop()


async def carrier(logistics: httpx.AsyncClient) -> None:
    """The carrier the courier dispatches with."""
    response = await logistics.post(
        "/api/v1/carriers",
        json={"code": CARRIER, "name": "Bench Post", "service_types": ["standard"]},
    )
    if response.status_code != 201:
        raise BenchError(f"POST /api/v1/carriers answered {response.status_code}: {response.text}")


def run(options: Options, log_dir: Path) -> SagaResult:
    # The services get the bench's settings only: the processes inherit this environment, where
    # a caller's ERP_* (bench.sh exports ERP_AUTH_PORT for its own part) would win.
    for variable in [name for name in os.environ if name.startswith("ERP_")]:
        if not variable.startswith("ERP_TEST_"):
            del os.environ[variable]
    name = str(os.getpid())
    with ExitStack() as stack:
        stack.callback(drop_databases, f"erpbench_{name}_")
        stack.callback(delete_keys, f"erpbench:{name}:")
        vhost = stack.enter_context(own_vhost(f"erpbench-{name}"))
        env = bench_env(name, vhost)
        admin = create_super_admin(env)
        print(f"== saga: starting {', '.join(PLATFORM)} (logs: {log_dir})", flush=True)
        platform = stack.enter_context(Platform(env, log_dir).start())
        try:
            return asyncio.run(measure(platform, env["ERP_AMQP_URL"], admin, options))
        except BaseException:
            for service, log in platform.logs().items():
                tail = "\n".join(log.splitlines()[-40:])
                print(f"--- erp serve {service} (last 40 lines)\n{tail}", file=sys.stderr)
            raise


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.saga", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--orders", type=int, default=300, help="measured orders (default 300)")
    parser.add_argument("--concurrency", type=int, default=16, help="in flight (default 16)")
    parser.add_argument("--products", type=int, default=10, help="products (default 10)")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured orders (default 20)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for sagas")
    parser.add_argument("--output", type=Path, help="write the table here too")
    parser.add_argument("--append", action="store_true", help="append to --output")
    parser.add_argument("--note", default="", help="a line above the table")
    parser.add_argument("--logs", type=Path, help="directory for the services' logs")
    args = parser.parse_args(argv)
    if args.orders < 1 or args.concurrency < 1 or args.products < 1 or args.warmup < 0:
        parser.error("--orders, --concurrency and --products must be at least 1, --warmup 0")
    options = Options(args.orders, args.concurrency, args.products, args.warmup, args.timeout)
    log_dir = args.logs or Path(tempfile.mkdtemp(prefix="bench-saga-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        result = run(options, log_dir)
    except BenchError as error:
        print(f"bench: FAILED: {error}", file=sys.stderr)
        return 1
    text = table(result, concurrency=options.concurrency)
    if args.note:
        text = f"{args.note}\n\n{text}"
    print(text)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with args.output.open("a" if args.append else "w") as output:
            output.write(("\n" if args.append else "") + text + "\n")
    problems = failures(result)
    for problem in problems:
        print(f"bench: FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
